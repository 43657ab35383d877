"""Shape and element-wise layers: flatten, reshape, activation, dropout, layer/batch norm."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from forceexp.core.layers.base import LAYERS, Layer, float_spec, make_activation
from forceexp.errors import ConfigError
from forceexp.specs import TensorSpec


@LAYERS.register("flatten")
class Flatten(Layer):
    """Flatten all non-batch axes into one, ``S -> (prod(S),)``; a scalar becomes ``(1,)``.

    Args:
        input_spec: Any input.
        path: Config path of the layer.
    """

    def __init__(self, input_spec: TensorSpec | None, path: str) -> None:
        super().__init__(input_spec, path)
        spec = self.require_input("flatten")
        self.output_spec = TensorSpec(spec.type, (spec.size,), spec.num_values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *S) -> (B, prod(S))``."""
        return x.reshape(x.shape[0], -1)


@LAYERS.register("reshape")
class Reshape(Layer):
    """Reshape the non-batch axes to ``shape`` (one entry may be -1).

    Args:
        input_spec: Any input.
        path: Config path of the layer.
        shape: Target shape without the batch axis; the element count must match.
    """

    def __init__(self, input_spec: TensorSpec | None, path: str, shape: list[int] = ()) -> None:
        super().__init__(input_spec, path)
        spec = self.require_input("reshape")
        dims = [int(d) for d in ([shape] if isinstance(shape, int) else shape)]
        known = math.prod(d for d in dims if d != -1)
        if dims.count(-1) == 1 and known > 0 and spec.size % known == 0:
            dims[dims.index(-1)] = spec.size // known
        if dims.count(-1) or math.prod(dims) != spec.size or min(dims, default=1) < 1:
            raise ConfigError(
                f"{path}: cannot reshape input shape {spec.shape} ({spec.size} elements) "
                f"to shape {tuple(shape)}"
            )
        self.shape = tuple(dims)
        self.output_spec = TensorSpec(spec.type, self.shape, spec.num_values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *S) -> (B, *shape)``."""
        return x.reshape(x.shape[0], *self.shape)


@LAYERS.register("activation")
class Activation(Layer):
    """Apply a nonlinearity element-wise.

    Args:
        input_spec: Float input.
        path: Config path of the layer.
        nonlinearity: Activation name (see ``ACTIVATIONS``).
    """

    def __init__(self, input_spec: TensorSpec | None, path: str, nonlinearity: str = "tanh"):
        super().__init__(input_spec, path)
        self.output_spec = float_spec(self.require_float("activation").shape)
        self.activation = make_activation(path, nonlinearity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        return self.activation(x.float())


@LAYERS.register("dropout")
class Dropout(Layer):
    """Zero elements with probability ``rate`` while training (inactive in eval mode).

    Args:
        input_spec: Float input.
        path: Config path of the layer.
        rate: Drop probability in [0, 1).
    """

    def __init__(self, input_spec: TensorSpec | None, path: str, rate: float = 0.1) -> None:
        super().__init__(input_spec, path)
        self.output_spec = float_spec(self.require_float("dropout").shape)
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"{path}.rate: {rate!r} is invalid; expected 0 <= rate < 1")
        self.dropout = nn.Dropout(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        return self.dropout(x.float())


@LAYERS.register("layer_norm")
class LayerNorm(Layer):
    """Normalise the last axis to zero mean and unit variance, with a learned scale and shift.

    Args:
        input_spec: Float input of rank >= 1.
        path: Config path of the layer.
    """

    def __init__(self, input_spec: TensorSpec | None, path: str) -> None:
        super().__init__(input_spec, path)
        shape = self.require_float("layer_norm").shape
        if not shape:
            raise ConfigError(f"{path}: layer_norm needs an input of rank >= 1; got shape ()")
        self.norm = nn.LayerNorm(shape[-1])
        self.output_spec = float_spec(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        return self.norm(x.float())


@LAYERS.register("batch_norm")
class BatchNorm(Layer):
    """Normalise each feature of the last axis with batch statistics (running ones in eval).

    A training-mode batch of one row (a single ``act`` call) uses the running statistics, since
    one sample has no variance.

    Args:
        input_spec: Float input of rank >= 1.
        path: Config path of the layer.
        momentum: Update rate of the running statistics.
    """

    def __init__(self, input_spec: TensorSpec | None, path: str, momentum: float = 0.1) -> None:
        super().__init__(input_spec, path)
        shape = self.require_float("batch_norm").shape
        if not shape:
            raise ConfigError(f"{path}: batch_norm needs an input of rank >= 1; got shape ()")
        self.norm = nn.BatchNorm1d(shape[-1], momentum=momentum)
        self.output_spec = float_spec(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        flat = x.float().reshape(-1, x.shape[-1])
        use_batch = self.training and flat.shape[0] > 1
        n = self.norm
        y = F.batch_norm(
            flat, n.running_mean, n.running_var, n.weight, n.bias, use_batch, n.momentum, n.eps
        )
        return y.reshape(x.shape)


POOLINGS = ("concat", "max", "mean", "product", "sum")


@LAYERS.register("pooling")
class Pooling(Layer):
    """Global pooling over all non-batch axes but the last; ``concat`` flattens instead.

    Args:
        input_spec: Float input ``(*S, C)``.
        path: Config path of the layer.
        reduction: ``'concat'`` (output ``(prod(S) * C,)``) or ``'max'`` / ``'mean'`` /
            ``'product'`` / ``'sum'`` (output ``(C,)``).
    """

    def __init__(self, input_spec: TensorSpec | None, path: str, reduction: str = "max") -> None:
        super().__init__(input_spec, path)
        spec = self.require_float("pooling")
        if reduction not in POOLINGS:
            raise ConfigError(
                f"{path}.reduction: {reduction!r} is invalid; expected one of {', '.join(POOLINGS)}"
            )
        if reduction != "concat" and not spec.shape:
            raise ConfigError(f"{path}: pooling {reduction!r} needs an input of rank >= 1")
        self.reduction = reduction
        shape = (spec.size,) if reduction == "concat" else (spec.shape[-1],)
        self.output_spec = float_spec(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *S, C) -> (B, C)`` (or ``(B, prod(S) * C)`` for concat)."""
        x = x.float()
        if self.reduction == "concat":
            return x.reshape(x.shape[0], -1)
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        if self.reduction == "max":
            return flat.amax(dim=1)
        if self.reduction == "mean":
            return flat.mean(dim=1)
        return flat.prod(dim=1) if self.reduction == "product" else flat.sum(dim=1)
