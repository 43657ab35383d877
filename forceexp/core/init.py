"""Weight initialisation shared by networks and heads (orthogonal, as SB3 and CleanRL do)."""

from __future__ import annotations

import math

from torch import nn

HIDDEN_GAIN = math.sqrt(2.0)


def orthogonal_(layer: nn.Module, gain: float = HIDDEN_GAIN) -> nn.Module:
    """Orthogonal weights with ``gain`` and zero bias; returns the layer."""
    if isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d):
        nn.init.orthogonal_(layer.weight, gain)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return layer
