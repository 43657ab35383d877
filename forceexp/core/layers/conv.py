"""Convolution and pooling layers over channels-last inputs: (L, C) for 1d, (H, W, C) for 2d."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from forceexp.core.init import orthogonal_
from forceexp.core.layers.base import (
    LAYERS,
    Layer,
    check_positive,
    float_spec,
    make_activation,
    window_output,
)
from forceexp.errors import ConfigError, is_int
from forceexp.specs import TensorSpec

Padding = Literal["same", "valid"]
_LAYOUT = {1: "(length, channels)", 2: "(height, width, channels)"}


def _plan(
    layer: Layer, rank: int, window: int, stride: int, dilation: int, padding: str
) -> tuple[tuple[int, ...], list[int]]:
    """Spatial output shape and the ``F.pad`` list (last spatial axis first) for a window op."""
    kind = f"{type(layer).__name__.lower()}"
    spec = layer.require_rank(kind, rank + 1, _LAYOUT[rank])
    check_positive(layer.path, window=window, stride=stride, dilation=dilation)
    outs, pads = [], []
    for length in spec.shape[:-1]:
        out, pad = window_output(layer.path, length, window, stride, dilation, padding)
        outs.append(out)
        pads.append(pad)
    flat = [p for pad in reversed(pads) for p in pad]
    return tuple(outs), flat


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.float().movedim(-1, 1)


class _Conv(Layer):
    rank = 1

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        size: int = 32,
        window: int = 3,
        stride: int = 1,
        padding: Padding = "same",
        dilation: int = 1,
        bias: bool = True,
        activation: str | None = "relu",
    ) -> None:
        super().__init__(input_spec, path)
        spatial, self.pad = _plan(self, self.rank, window, stride, dilation, padding)
        check_positive(path, size=size)
        conv = nn.Conv1d if self.rank == 1 else nn.Conv2d
        channels = self.require_input("conv").shape[-1]
        self.conv = orthogonal_(conv(channels, size, window, stride, 0, dilation, bias=bias))
        self.activation = make_activation(path, activation)
        self.output_spec = float_spec((*spatial, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *spatial, C) -> (B, *spatial', size)``."""
        y = self.conv(F.pad(_channels_first(x), self.pad))
        return self.activation(y).movedim(1, -1)


@LAYERS.register("conv1d")
class Conv1d(_Conv):
    """1d convolution over ``(length, channels)`` inputs, output ``(length', size)``.

    Args:
        input_spec: Float input of shape ``(L, C)``.
        path: Config path of the layer.
        size: Output channels.
        window: Kernel width.
        stride: Step between windows.
        padding: ``'same'`` (``ceil(L / stride)`` outputs) or ``'valid'``.
        dilation: Spacing between kernel taps.
        bias: Whether to add a bias.
        activation: Activation name (default ``'relu'``).
    """

    rank = 1


@LAYERS.register("conv2d")
class Conv2d(_Conv):
    """2d convolution over ``(height, width, channels)`` inputs, output ``(H', W', size)``.

    Args:
        input_spec: Float input of shape ``(H, W, C)``.
        path: Config path of the layer.
        size: Output channels.
        window: Square kernel size.
        stride: Step between windows on both axes.
        padding: ``'same'`` (``ceil(H / stride)`` rows) or ``'valid'``.
        dilation: Spacing between kernel taps.
        bias: Whether to add a bias.
        activation: Activation name (default ``'relu'``).
    """

    rank = 2


class _Pool(Layer):
    rank = 1

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        reduction: Literal["max", "average"] = "max",
        window: int = 2,
        stride: int = 2,
        padding: Padding = "same",
    ) -> None:
        super().__init__(input_spec, path)
        if reduction not in ("max", "average"):
            raise ConfigError(
                f"{path}.reduction: {reduction!r} is invalid; expected 'max' or 'average'"
            )
        spatial, self.pad = _plan(self, self.rank, window, stride, 1, padding)
        self.reduction, self.window, self.stride = reduction, window, stride
        self.output_spec = float_spec((*spatial, self.require_input("pool").shape[-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *spatial, C) -> (B, *spatial', C)``; padding is ignored by both reductions."""
        x = _channels_first(x)
        if self.reduction == "max":
            pool = F.max_pool1d if self.rank == 1 else F.max_pool2d
            y = pool(F.pad(x, self.pad, value=float("-inf")), self.window, self.stride)
        else:
            pool = F.avg_pool1d if self.rank == 1 else F.avg_pool2d
            total = pool(F.pad(x, self.pad), self.window, self.stride)
            count = pool(F.pad(torch.ones_like(x[:1, :1]), self.pad), self.window, self.stride)
            y = total / count
        return y.movedim(1, -1)


@LAYERS.register("pool1d")
class Pool1d(_Pool):
    """Max or average pooling over ``(length, channels)`` inputs.

    Args:
        input_spec: Float input of shape ``(L, C)``.
        path: Config path of the layer.
        reduction: ``'max'`` or ``'average'``.
        window: Pooling window.
        stride: Step between windows.
        padding: ``'same'`` or ``'valid'``.
    """

    rank = 1


@LAYERS.register("pool2d")
class Pool2d(_Pool):
    """Max or average pooling over ``(height, width, channels)`` inputs.

    Args:
        input_spec: Float input of shape ``(H, W, C)``.
        path: Config path of the layer.
        reduction: ``'max'`` or ``'average'``.
        window: Square pooling window.
        stride: Step between windows on both axes.
        padding: ``'same'`` or ``'valid'``.
    """

    rank = 2


class _ConvTranspose(Layer):
    """Transposed convolution with TensorFlow's output sizes (the gradient of a conv)."""

    rank = 1

    def _build(
        self,
        size: int,
        window: int,
        output: int | list[int] | None,
        stride: int,
        padding: str,
        dilation: int,
        bias: bool,
        activation: str | None,
    ) -> None:
        kind = f"conv{self.rank}d_transpose"
        spec = self.require_rank(kind, self.rank + 1, _LAYOUT[self.rank])
        check_positive(self.path, size=size, window=window, stride=stride, dilation=dilation)
        if padding not in ("same", "valid"):
            raise ConfigError(
                f"{self.path}.padding: {padding!r} is invalid; expected 'same' or 'valid'"
            )
        span = (window - 1) * dilation + 1
        lengths = spec.shape[:-1]
        if output is None:
            extra = 0 if padding == "same" else max(span - stride, 0)
            targets = tuple(n * stride + extra for n in lengths)
        else:
            targets = (output,) * self.rank if isinstance(output, int) else tuple(output)
        wrong = ConfigError(
            f"{self.path}: output {output!r} is invalid for input {lengths} with window "
            f"{window}, stride {stride}, padding {padding!r}; expected sizes that a "
            f"conv{self.rank}d with these arguments maps back to {lengths}"
        )
        if len(targets) != self.rank or not all(is_int(t) and t >= 1 for t in targets):
            raise wrong
        self.starts, self.targets = [], targets
        for length, target in zip(lengths, targets, strict=True):
            try:
                out, (start, _) = window_output(
                    self.path, target, window, stride, dilation, padding
                )
            except ConfigError:
                out = None
            if out != length:
                raise wrong
            self.starts.append(start)
        conv = nn.ConvTranspose1d if self.rank == 1 else nn.ConvTranspose2d
        self.conv = conv(spec.shape[-1], size, window, stride, bias=bias, dilation=dilation)
        nn.init.orthogonal_(self.conv.weight, 2.0**0.5)
        if bias:
            nn.init.zeros_(self.conv.bias)
        self.activation = make_activation(self.path, activation)
        self.output_spec = float_spec((*targets, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *spatial, C) -> (B, *output, size)``."""
        y = self.conv(_channels_first(x))
        for axis, (start, target) in enumerate(zip(self.starts, self.targets, strict=True)):
            dim = 2 + axis
            y = y.narrow(dim, start, min(target, y.shape[dim] - start))
            missing = target - y.shape[dim]
            if missing > 0:  # stride > window span: TensorFlow pads the end with zeros
                pad = [0, 0] * (y.dim() - 1 - dim) + [0, missing]
                y = F.pad(y, pad)
        return self.activation(y).movedim(1, -1)


@LAYERS.register("conv1d_transpose")
class Conv1dTranspose(_ConvTranspose):
    """1d transposed convolution ("deconvolution"), ``(L, C) -> (output_width, size)``.

    Args:
        input_spec: Float input of shape ``(L, C)``.
        path: Config path of the layer.
        size: Output channels.
        window: Kernel width.
        output_width: Output length; default ``L * stride`` (``'same'``) or
            ``L * stride + max(window - stride, 0)`` (``'valid'``); any length a conv1d with
            these arguments maps back to ``L`` is accepted.
        stride: Upsampling step.
        padding: ``'same'`` or ``'valid'``.
        dilation: Spacing between kernel taps.
        bias: Whether to add a bias.
        activation: Activation name (default ``'relu'``).
    """

    rank = 1

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        size: int = 32,
        window: int = 3,
        output_width: int | None = None,
        stride: int = 1,
        padding: Padding = "same",
        dilation: int = 1,
        bias: bool = True,
        activation: str | None = "relu",
    ) -> None:
        super().__init__(input_spec, path)
        self._build(size, window, output_width, stride, padding, dilation, bias, activation)


@LAYERS.register("conv2d_transpose")
class Conv2dTranspose(_ConvTranspose):
    """2d transposed convolution, ``(H, W, C) -> (*output_shape, size)`` (square window).

    Args:
        input_spec: Float input of shape ``(H, W, C)``.
        path: Config path of the layer.
        size: Output channels.
        window: Square kernel size.
        output_shape: ``(height, width)`` or one int for both; default as ``conv1d_transpose``
            on each axis.
        stride: Upsampling step on both axes.
        padding: ``'same'`` or ``'valid'``.
        dilation: Spacing between kernel taps.
        bias: Whether to add a bias.
        activation: Activation name (default ``'relu'``).
    """

    rank = 2

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        size: int = 32,
        window: int = 3,
        output_shape: int | list[int] | None = None,
        stride: int = 1,
        padding: Padding = "same",
        dilation: int = 1,
        bias: bool = True,
        activation: str | None = "relu",
    ) -> None:
        super().__init__(input_spec, path)
        self._build(size, window, output_shape, stride, padding, dilation, bias, activation)
