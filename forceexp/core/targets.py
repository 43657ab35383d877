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


@torch.no_grad()
def polyak_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) * target + tau * source`` over parameters; buffers are copied.

    ``tau = 1`` is a hard copy. Parameters and buffers are matched by registration order, so
    ``target`` must be a ``frozen_copy`` of ``source``.
    """
    params = list(source.parameters())
    targets = list(target.parameters())
    if tau >= 1.0:
        torch._foreach_copy_(targets, params)
    else:
        torch._foreach_lerp_(targets, params, tau)
    for buffer, target_buffer in zip(source.buffers(), target.buffers(), strict=True):
        target_buffer.copy_(buffer)
