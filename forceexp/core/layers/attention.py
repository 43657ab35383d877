"""Self-attention over the positions of a sequence or image input (``self_attention``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from forceexp.core.init import orthogonal_
from forceexp.core.layers.base import LAYERS, Layer, check_positive, float_spec, make_activation
from forceexp.errors import ConfigError, message
from forceexp.specs import TensorSpec


@LAYERS.register("self_attention")
class SelfAttention(Layer):
    """Scaled dot-product self-attention: every position attends to all positions.

    The positions are all axes but the last (flattened for the attention): queries and keys
    are linear maps to ``attention_size``, values a linear map to ``size``; the output is
    ``softmax(q k^T / sqrt(attention_size)) v``, then ``activation`` and dropout.

    Args:
        input_spec: Float input of rank >= 2, ``(*positions, features)``.
        path: Config path of the layer.
        size: Output features per position; output ``(*positions, size)``.
        attention_size: Query/key width (default ``size``).
        bias: Whether the query/key/value maps have biases.
        activation: Applied to the output (default none).
        dropout: Dropout rate in [0, 1) on the output.
        initialization_scale: Orthogonal-init gain of the value map.
    """

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        size: int = 64,
        attention_size: int | None = None,
        bias: bool = False,
        activation: str | None = None,
        dropout: float = 0.0,
        initialization_scale: float = 1.0,
    ) -> None:
        super().__init__(input_spec, path)
        spec = self.require_float("self_attention")
        if len(spec.shape) < 2:
            raise ConfigError(
                f"{path}: self_attention expects an input of rank >= 2 (positions, features); "
                f"got shape {spec.shape}"
            )
        attention_size = size if attention_size is None else attention_size
        check_positive(path, size=size, attention_size=attention_size)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(message(f"{path}.dropout", dropout, "0 <= rate < 1"))
        features = spec.shape[-1]
        self.query = orthogonal_(nn.Linear(features, attention_size, bias=bias), 1.0)
        self.key = orthogonal_(nn.Linear(features, attention_size, bias=bias), 1.0)
        self.value = orthogonal_(nn.Linear(features, size, bias=bias), initialization_scale)
        self.scale = 1.0 / math.sqrt(attention_size)
        self.activation = make_activation(path, activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output_spec = float_spec((*spec.shape[:-1], size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *P, F) -> (B, *P, size)``."""
        flat = x.float().flatten(1, -2)  # (B, positions, F)
        scores = self.query(flat) @ self.key(flat).transpose(1, 2) * self.scale
        y = torch.softmax(scores, dim=-1) @ self.value(flat)
        y = y.reshape(x.shape[0], *self.output_spec.shape)
        return self.dropout(self.activation(y))
