"""AutoNetwork: per-state flattening/one-hot encoding, concatenation, then a dense stack."""

from __future__ import annotations

import torch
from torch import nn

from forceexp.core.init import orthogonal_
from forceexp.errors import ConfigError
from forceexp.specs import Specs, TensorSpec

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}


def _input_size(name: str, spec: TensorSpec) -> int:
    if spec.type == "int":
        if spec.num_values is None:
            raise ConfigError(f"states.{name}: int states need num_values for the auto network")
        return spec.size * spec.num_values
    return spec.size


class AutoNetwork(nn.Module):
    """A network that works for any dict of states with no configuration.

    Float and bool states are flattened, int states one-hot encoded, all are concatenated and
    passed through ``depth`` dense layers of ``size`` units.

    Args:
        states: The agent's state specs.
        size: Units per dense layer.
        depth: Number of dense layers.
        activation: One of ``tanh``, ``relu``, ``elu``, ``gelu``, ``silu``.
    """

    def __init__(self, states: Specs, size: int = 64, depth: int = 2, activation: str = "tanh"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"network.activation: unknown activation {activation!r}; "
                f"valid: {', '.join(sorted(ACTIVATIONS))}"
            )
        self.specs = [(name, spec) for name, spec in states.items]
        width = sum(_input_size(name, spec) for name, spec in self.specs)
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [orthogonal_(nn.Linear(width, size)), ACTIVATIONS[activation]()]
            width = size
        self.mlp = nn.Sequential(*layers)
        self.output_size = width

    def forward(self, states: dict[str, torch.Tensor]) -> torch.Tensor:
        """Encode ``{name: (B, *shape)}`` into ``(B, output_size)``."""
        parts = []
        for name, spec in self.specs:
            x = states[name]
            if spec.type == "int":
                x = nn.functional.one_hot(x.long(), spec.num_values).float()
            parts.append(x.reshape(x.shape[0], -1).float())
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return self.mlp(x)
