"""Preprocessing layers: clipping, image resize/grayscale, and the temporal deltafier/sequence.

``deltafier`` and ``sequence`` depend on earlier steps of the episode. They keep that history
as internals, the mechanism the recurrent layers use: the agent holds one row of internals per
parallel slot, zeroes it at episode starts, and PPO re-runs rollout sequences from them. Their
first internal entry is a "has previous input" flag, so zeroed internals mean a new episode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from forceexp.core.layers.base import LAYERS, Layer, check_positive
from forceexp.errors import ConfigError, message
from forceexp.specs import TensorSpec

GRAYSCALE = (0.2989, 0.587, 0.114)  # ITU-R 601 luma weights, as tf.image.rgb_to_grayscale
Bounds = tuple[float | None, float | None]


def scalar_bounds(spec: TensorSpec) -> Bounds:
    """Finite scalar bounds holding for every element of ``spec`` (None where unknown)."""
    low = None if spec.min_value is None else float(np.min(spec.min_value))
    high = None if spec.max_value is None else float(np.max(spec.max_value))
    return (
        low if low is not None and np.isfinite(low) else None,
        high if high is not None and np.isfinite(high) else None,
    )


def bounded_spec(shape: tuple[int, ...], bounds: Bounds) -> TensorSpec:
    """A float spec of ``shape`` with scalar ``(min_value, max_value)`` (None: unbounded).

    Preprocessing layers pass on the bounds that still hold, so a later
    ``linear_normalization`` finds its range as in Tensorforce.
    """
    return TensorSpec("float", tuple(int(d) for d in shape), None, *bounds)


@LAYERS.register("clipping")
class Clipping(Layer):
    """Clip values to ``[lower, upper]`` (either bound may be omitted, not both).

    Args:
        input_spec: Float input of any shape.
        path: Config path of the layer.
        lower: Lower bound, or None.
        upper: Upper bound, or None.
    """

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        lower: float | None = None,
        upper: float | None = None,
    ) -> None:
        super().__init__(input_spec, path)
        spec = self.require_float("clipping")
        if lower is None and upper is None:
            raise ConfigError(f"{path}: clipping needs lower, upper or both; got neither")
        if lower is not None and upper is not None and lower > upper:
            raise ConfigError(message(f"{path}.upper", upper, f"a value >= lower ({lower})"))
        self.lower, self.upper = lower, upper
        low, high = scalar_bounds(spec)
        low = lower if low is None else low if lower is None else max(low, lower)
        high = upper if high is None else high if upper is None else min(high, upper)
        self.output_spec = bounded_spec(spec.shape, (low, high))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        return x.float().clamp(self.lower, self.upper)


@LAYERS.register("image")
class Image(Layer):
    """Resize an image (bilinear, half-pixel centres) and optionally turn it to grayscale.

    Args:
        input_spec: Float input of shape ``(H, W, C)``.
        path: Config path of the layer.
        height: Output height; None keeps it, or derives it from ``width`` keeping the aspect.
        width: Output width; None keeps it, or derives it from ``height`` keeping the aspect.
        grayscale: True for the luma weights (0.2989, 0.587, 0.114) over 3 channels, or a list
            of one weight per channel; the output then has one channel.
    """

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        height: int | None = None,
        width: int | None = None,
        grayscale: bool | list[float] = False,
    ) -> None:
        super().__init__(input_spec, path)
        spec = self.require_rank("image", 3, "(height, width, channels)")
        h, w, c = spec.shape
        bounds = scalar_bounds(spec)  # bilinear resizing stays within them
        if height is not None and width is None:
            width = round(height * w / h)
        elif width is not None and height is None:
            height = round(width * h / w)
        self.size = None if height is None else (height, width)
        if self.size is not None:
            check_positive(path, height=height, width=width)
            h, w = self.size
        self.weights: torch.Tensor | None
        self.register_buffer("weights", None)
        if grayscale is True or not isinstance(grayscale, bool):
            weights = GRAYSCALE if grayscale is True else tuple(grayscale)
            if len(weights) != c:
                raise ConfigError(
                    message(f"{path}.grayscale", grayscale, f"weights for {c} channels")
                )
            self.weights = torch.tensor(weights, dtype=torch.float32)
            c = 1
            total, positive = sum(weights), min(weights) >= 0.0
            low, high = bounds if positive else (None, None)
            bounds = (
                None if low is None else low * total,
                None if high is None else high * total,
            )
        self.output_spec = bounded_spec((h, w, c), bounds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C) -> (B, height, width, 1 or C)``."""
        x = x.float()
        if self.size is not None:
            x = F.interpolate(x.movedim(-1, 1), size=self.size, mode="bilinear").movedim(1, -1)
        if self.weights is not None:
            x = (x * self.weights).sum(-1, keepdim=True)
        return x


class _Temporal(Layer):
    """A layer whose output depends on earlier inputs of the episode (kept as internals)."""

    history = 1  # earlier inputs kept

    def _init_history(self, spec: TensorSpec) -> None:
        self.item_shape = spec.shape
        self.internal_shape = (1 + self.history * spec.size,)

    def _earlier(self, x: torch.Tensor, internals: torch.Tensor) -> torch.Tensor:
        """Earlier inputs ``(B, history, *S)``; rows at an episode start repeat ``x``."""
        has = internals[:, :1] > 0.5
        earlier = internals[:, 1:].reshape(x.shape[0], self.history, *self.item_shape)
        mask = has.view(-1, *([1] * (earlier.dim() - 1)))
        return torch.where(mask, earlier, x.unsqueeze(1).expand_as(earlier))

    def _next(self, frames: torch.Tensor) -> torch.Tensor:
        """Next internals: the flag set and the last ``history`` inputs of ``frames``."""
        kept = frames[:, -self.history :].reshape(frames.shape[0], -1)
        return torch.cat((torch.ones_like(kept[:, :1]), kept), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The output at an episode's first step (no internals given)."""
        return self.first_step(x)


@LAYERS.register("deltafier")
class Deltafier(_Temporal):
    """The difference to the previous step's input (zero at an episode's first step).

    Args:
        input_spec: Float input of any shape ``S``.
        path: Config path of the layer.
        concatenate: False: output the delta (shape ``S``); an axis (int >= 0, non-batch):
            output the input and the delta concatenated along that axis.
    """

    def __init__(
        self, input_spec: TensorSpec | None, path: str, concatenate: bool | int = False
    ) -> None:
        super().__init__(input_spec, path)
        spec = self.require_float("deltafier")
        self._init_history(spec)
        shape = list(spec.shape)
        if concatenate is not False:
            if isinstance(concatenate, bool) or not 0 <= concatenate < len(shape):
                raise ConfigError(
                    message(
                        f"{path}.concatenate", concatenate, f"False or an axis in [0, {len(shape)})"
                    )
                )
            shape[concatenate] *= 2
        self.concatenate = concatenate
        low, high = scalar_bounds(spec)
        bounds: Bounds = (None, None)
        if low is not None and high is not None:  # a delta lies in [low - high, high - low]
            bounds = (low - high, high - low)
            if concatenate is not False:
                bounds = (min(low, low - high), max(high, high - low))
        self.output_spec = bounded_spec(tuple(shape), bounds)

    def step(
        self, x: torch.Tensor, internals: torch.Tensor, t: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, *S) -> (B, *S')`` and the next internals (this input, flag set)."""
        x = x.float()
        delta = x - self._earlier(x, internals)[:, 0]
        following = self._next(x.unsqueeze(1))
        if self.concatenate is False:
            return delta, following
        return torch.cat((x, delta), dim=self.concatenate + 1), following


@LAYERS.register("sequence")
class Sequence(_Temporal):
    """Stack the last ``length`` inputs, oldest first (the first input repeats at a start).

    Args:
        input_spec: Float input of any shape ``S``.
        path: Config path of the layer.
        length: Number of inputs stacked (>= 2).
        axis: Non-batch axis: the concatenation axis, or where the new axis goes (-1: last).
        concatenate: True: concatenate along ``axis`` (its size times ``length``); False: add
            a new axis of size ``length`` at ``axis``. Scalars are always stacked (shape
            ``(length,)``): their concatenation.
    """

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        length: int = 2,
        axis: int = -1,
        concatenate: bool = True,
    ) -> None:
        super().__init__(input_spec, path)
        spec = self.require_float("sequence")
        if not isinstance(length, int) or isinstance(length, bool) or length < 2:
            raise ConfigError(message(f"{path}.length", length, "an int >= 2"))
        concatenate = concatenate and bool(spec.shape)
        self.history, self.length, self.concatenate = length - 1, length, concatenate
        self._init_history(spec)
        rank = len(spec.shape)
        limit = rank if concatenate else rank + 1
        if axis == -1:
            axis = limit - 1
        if not isinstance(axis, int) or not 0 <= axis < limit:
            raise ConfigError(message(f"{path}.axis", axis, f"-1 or an axis in [0, {limit})"))
        self.axis = axis
        shape: list[Any] = list(spec.shape)
        if concatenate:
            shape[axis] *= length
        else:
            shape.insert(axis, length)
        self.output_spec = bounded_spec(tuple(shape), scalar_bounds(spec))

    def step(
        self, x: torch.Tensor, internals: torch.Tensor, t: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, *S) -> (B, *S')`` and the next internals (the last ``length - 1`` inputs)."""
        x = x.float()
        earlier = self._earlier(x, internals)
        frames = torch.cat((earlier, x.unsqueeze(1)), dim=1)  # (B, length, *S), oldest first
        out = frames.movedim(1, self.axis + 1)
        if self.concatenate:
            out = out.flatten(self.axis + 1, self.axis + 2)
        return out, self._next(frames)
