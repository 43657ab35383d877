"""Target networks: a frozen copy of a module, synced by Polyak averaging or hard copies."""

from __future__ import annotations

import copy

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with gradients off, in eval mode (a target network)."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target.eval()


def polyak_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) * target + tau * source`` over parameters; buffers are copied.

    ``tau = 1`` is a hard copy. Parameters and buffers are matched by registration order, so
    ``target`` must be a ``frozen_copy`` of ``source``.
    """
    Polyak([(source, target)])(tau)


class Polyak:
    """``polyak_update`` of fixed (source, target) pairs, in one call per kind of tensor.

    The tensor lists are gathered once: walking the modules each step cost more than the
    averaging itself (~0.2 ms against ~0.09 ms for twin 256x256 critics). Updates are in place,
    so anything holding views of the targets (e.g. ``core/dense.py`` stacks) sees them.
    """

    def __init__(self, pairs: list[tuple[nn.Module, nn.Module]]) -> None:
        self.params = [p for source, _ in pairs for p in source.parameters()]
        self.targets = [p for _, target in pairs for p in target.parameters()]
        self.buffers = [b for source, _ in pairs for b in source.buffers()]
        self.target_buffers = [b for _, target in pairs for b in target.buffers()]
        if len(self.params) != len(self.targets) or len(self.buffers) != len(self.target_buffers):
            raise ValueError("a target is not a frozen_copy of its source")

    @torch.no_grad()
    def __call__(self, tau: float) -> None:
        """Average (``tau < 1``) or copy (``tau = 1``) every pair's parameters; copy buffers."""
        if tau >= 1.0:
            torch._foreach_copy_(self.targets, self.params)
        else:
            torch._foreach_lerp_(self.targets, self.params, tau)
        if self.buffers:
            torch._foreach_copy_(self.target_buffers, self.buffers)
