"""Dense, linear and embedding layers (they act on the last axis of their input)."""

from __future__ import annotations

import torch
from torch import nn

from forceexp.core.init import orthogonal_
from forceexp.core.layers.base import LAYERS, Layer, check_positive, float_spec, make_activation
from forceexp.errors import ConfigError
from forceexp.specs import TensorSpec


@LAYERS.register("dense")
class Dense(Layer):
    """Affine map of the last axis to ``size`` units, then ``activation`` and dropout.

    Args:
        input_spec: Float or bool input of rank >= 1, shape ``(*, in)``; output ``(*, size)``.
        path: Config path of the layer.
        size: Output units (>= 1).
        bias: Whether to add a bias.
        activation: Activation name (see ``ACTIVATIONS``), or ``'none'``.
        dropout: Dropout rate in [0, 1) applied after the activation.
    """

    kind = "dense"

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        size: int = 64,
        bias: bool = True,
        activation: str | None = "tanh",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, path)
        spec = self.require_float(self.kind)
        check_positive(path, size=size)
        if len(spec.shape) == 0:
            raise ConfigError(f"{path}: {self.kind} needs an input of rank >= 1; got shape ()")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"{path}.dropout: {dropout!r} is invalid; expected 0 <= rate < 1")
        self.linear = orthogonal_(nn.Linear(spec.shape[-1], size, bias=bias))
        self.activation = make_activation(path, activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output_spec = float_spec((*spec.shape[:-1], size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *, in) -> (B, *, size)``."""
        return self.dropout(self.activation(self.linear(x.float())))


@LAYERS.register("linear")
class Linear(Dense):
    """Affine map of the last axis to ``size`` units with no activation.

    Args:
        input_spec: Float or bool input of rank >= 1, shape ``(*, in)``; output ``(*, size)``.
        path: Config path of the layer.
        size: Output units (>= 1).
        bias: Whether to add a bias.
    """

    kind = "linear"

    def __init__(
        self, input_spec: TensorSpec | None, path: str, size: int = 64, bias: bool = True
    ) -> None:
        super().__init__(input_spec, path, size=size, bias=bias, activation=None)


@LAYERS.register("embedding")
class Embedding(Layer):
    """Look up a learned vector for each int (or bool) value; adds a trailing ``size`` axis.

    Args:
        input_spec: Int or bool input of any shape ``S``; output ``(*S, size)``.
        path: Config path of the layer.
        size: Embedding width (>= 1).
        num_values: Number of distinct values; defaults to the input spec's ``num_values``
            (2 for bool).
        activation: Activation applied to the looked-up vectors (default ``'tanh'``).
    """

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        size: int = 32,
        num_values: int | None = None,
        activation: str | None = "tanh",
    ) -> None:
        super().__init__(input_spec, path)
        spec = self.require_input("embedding")
        if spec.type == "float":
            raise ConfigError(
                f"{path}: embedding needs an int or bool input; got a float input of shape "
                f"{spec.shape} (use dense for float inputs)"
            )
        if num_values is None:
            num_values = 2 if spec.type == "bool" else spec.num_values
        if num_values is None:
            raise ConfigError(f"{path}.num_values: the int input has no num_values; set it")
        check_positive(path, size=size, num_values=num_values)
        self.embedding = nn.Embedding(num_values, size)
        self.activation = make_activation(path, activation)
        self.output_spec = float_spec((*spec.shape, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *S) -> (B, *S, size)``."""
        return self.activation(self.embedding(x.long()))
