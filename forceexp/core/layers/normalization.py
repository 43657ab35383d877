"""Tensorforce's normalisation layers: linear (state bounds), exponential average, instance."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from forceexp.core.layers.base import LAYERS, Layer, float_spec
from forceexp.errors import ConfigError, message
from forceexp.specs import TensorSpec


def _axes(layer: Layer, axes: list[int] | None, default: tuple[int, ...]) -> tuple[int, ...]:
    """Validated non-batch axes (``default`` when None)."""
    rank = len(layer.require_float(type(layer).__name__).shape)
    chosen = default if axes is None else tuple(axes)
    if any(isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < rank for a in chosen):
        raise ConfigError(message(f"{layer.path}.axes", axes, f"axes in [0, {rank})"))
    return chosen


def _check_variance(path: str, only_mean: bool, min_variance: float) -> None:
    if not min_variance > 0.0:
        raise ConfigError(message(f"{path}.min_variance", min_variance, "a float > 0"))
    if only_mean and min_variance != 1e-4:
        raise ConfigError(f"{path}.min_variance: has no effect with only_mean=True; leave it out")


@LAYERS.register("linear_normalization")
class LinearNormalization(Layer):
    """Map ``[min_value, max_value]`` linearly onto ``[-2, 2]`` (Tensorforce's range).

    Elements with an infinite bound pass through unchanged.

    Args:
        input_spec: Float input; its ``min_value`` / ``max_value`` (a bounded state's spec) are
            the defaults for the bounds.
        path: Config path of the layer.
        min_value: Lower bound (scalar or array broadcastable to the input shape).
        max_value: Upper bound, each element greater than ``min_value``.
    """

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        min_value: Any = None,
        max_value: Any = None,
    ) -> None:
        super().__init__(input_spec, path)
        spec = self.require_float("linear_normalization")
        bounds = []
        for key, given, own in (
            ("min_value", min_value, spec.min_value),
            ("max_value", max_value, spec.max_value),
        ):
            value = own if given is None else given
            if value is None:
                raise ConfigError(
                    f"{path}.{key}: the input has no {key} (only a bounded state's spec has "
                    f"one); set {key}"
                )
            try:
                bounds.append(np.broadcast_to(np.asarray(value, np.float64), spec.shape))
            except ValueError as exc:
                raise ConfigError(
                    message(f"{path}.{key}", value, f"a scalar or array of shape {spec.shape}")
                ) from exc
        low, high = bounds
        if (low >= high).any():
            raise ConfigError(
                f"{path}: min_value {low.tolist()} is not below max_value {high.tolist()} "
                "everywhere; expected min_value < max_value"
            )
        finite = np.isfinite(low) & np.isfinite(high)
        scale = np.where(finite, 4.0 / np.where(finite, high - low, 1.0), 1.0)
        shift = np.where(finite, -low * scale - 2.0, 0.0)
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float32))
        bounds = (-2.0, 2.0) if finite.all() else (None, None)
        self.output_spec = TensorSpec("float", spec.shape, None, *bounds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out: ``4 (x - min) / (max - min) - 2``."""
        return x.float() * self.scale + self.shift


@LAYERS.register("exponential_normalization")
class ExponentialNormalization(Layer):
    """Normalise with exponential moving averages of mean and variance.

    The averages update on forward passes in training mode (PPO's updates, over each
    minibatch: ``decay ** batch_size`` weight on the old average); acting and evaluation
    (eval mode) use them frozen. They start at mean 0, variance 1 and are saved with the
    weights. Gradients do not flow through the statistics.

    Args:
        input_spec: Float input of rank >= 1.
        path: Config path of the layer.
        decay: Weight of the old average per row, in [0, 1].
        axes: Non-batch axes averaged over as well (default: all but the last).
        only_mean: Only subtract the mean.
        min_variance: Variance floor (> 0).
    """

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        decay: float = 0.999,
        axes: list[int] | None = None,
        only_mean: bool = False,
        min_variance: float = 1e-4,
    ) -> None:
        super().__init__(input_spec, path)
        shape = self.require_float("exponential_normalization").shape
        self.axes = _axes(self, axes, tuple(range(len(shape) - 1)))
        if not 0.0 <= decay <= 1.0:
            raise ConfigError(message(f"{path}.decay", decay, "a float in [0, 1]"))
        _check_variance(path, only_mean, min_variance)
        self.decay, self.only_mean, self.min_variance = decay, only_mean, min_variance
        stats = tuple(1 if i in self.axes else d for i, d in enumerate(shape))
        self.register_buffer("mean", torch.zeros(stats))
        self.register_buffer("variance", torch.ones(stats))
        self.output_spec = float_spec(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        x = x.float()
        if self.training and x.shape[0] > 0:
            self._update(x)
        x = x - self.mean
        if self.only_mean:
            return x
        return x * self.variance.clamp_min(self.min_variance).rsqrt()

    @torch.no_grad()
    def _update(self, x: torch.Tensor) -> None:
        dims = (0, *(1 + a for a in self.axes))
        mean = x.mean(dim=dims, keepdim=True)[0]
        variance = (x - mean).square().mean(dim=dims, keepdim=True)[0]
        keep = self.decay ** x.shape[0]
        self.mean.mul_(keep).add_((1.0 - keep) * mean)
        if not self.only_mean:
            self.variance.mul_(keep).add_((1.0 - keep) * variance)


@LAYERS.register("instance_normalization")
class InstanceNormalization(Layer):
    """Normalise each row by its own mean and variance over ``axes``.

    As in Tensorforce, gradients do not flow through the statistics.

    Args:
        input_spec: Float input of rank >= 1.
        path: Config path of the layer.
        axes: Non-batch axes to normalise over (default: all).
        only_mean: Only subtract the mean.
        min_variance: Variance floor (> 0).
    """

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        axes: list[int] | None = None,
        only_mean: bool = False,
        min_variance: float = 1e-4,
    ) -> None:
        super().__init__(input_spec, path)
        shape = self.require_float("instance_normalization").shape
        if not shape:
            raise ConfigError(f"{path}: instance_normalization needs an input of rank >= 1")
        self.axes = _axes(self, axes, tuple(range(len(shape))))
        _check_variance(path, only_mean, min_variance)
        self.only_mean, self.min_variance = only_mean, min_variance
        self.output_spec = float_spec(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        x = x.float()
        dims = tuple(1 + a for a in self.axes)
        mean = x.mean(dim=dims, keepdim=True).detach()
        if self.only_mean:
            return x - mean
        variance = x.var(dim=dims, keepdim=True, unbiased=False).detach()
        return (x - mean) * variance.clamp_min(self.min_variance).rsqrt()
