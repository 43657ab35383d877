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


class Polyak:
    """``target <- (1 - tau) * target + tau * source`` for fixed (source, target) pairs.

    ``tau = 1`` is a hard copy; buffers are copied. Parameters and buffers are matched by
    registration order, so each target must be a ``frozen_copy`` of its source.

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
