"""Recurrent layers (rnn, lstm, gru): one step per ``act``, internals carried by the agent.

A recurrent layer maps a float vector ``(F,)`` to ``(size,)`` and keeps an internal state
between calls. The network passes internals explicitly (``step``); the agent stores them per
parallel slot, resets them to zero at episode starts, and PPO re-runs whole sequences in its
update starting from the internals stored with each rollout's first row.
"""

from __future__ import annotations

import torch
from torch import nn

from forceexp.core.layers.base import LAYERS, Layer, check_positive, float_spec
from forceexp.errors import ConfigError
from forceexp.specs import TensorSpec

_CELLS: dict[str, type[nn.Module]] = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


class Recurrent(Layer):
    """Base of the recurrent layers: a torch cell over a rank-1 float input.

    Args:
        input_spec: Float input of shape ``(F,)`` (flatten images first); output ``(size,)``.
        path: Config path of the layer.
        size: Hidden units (>= 1).
    """

    kind = "rnn"

    def __init__(self, input_spec: TensorSpec | None, path: str, size: int = 64) -> None:
        super().__init__(input_spec, path)
        spec = self.require_float(self.kind)
        check_positive(path, size=size)
        if len(spec.shape) != 1:
            raise ConfigError(
                f"{path}: {self.kind} expects a rank-1 input (F,); got shape {spec.shape}; "
                "add dict(type='flatten') before it"
            )
        self.size = size
        self.cell = _CELLS[self.kind](spec.shape[0], size)
        self.output_spec = float_spec((size,))

    @property
    def internal_shape(self) -> tuple[int, ...]:
        """Shape of one row of internals (``(2, size)`` for LSTM: hidden and cell)."""
        return (2, self.size) if self.kind == "lstm" else (self.size,)

    def step(self, x: torch.Tensor, internals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``(B, F), (B, *internal_shape) -> (B, size), next internals``."""
        x = x.float()
        if self.kind == "lstm":
            hidden, cell = self.cell(x, (internals[:, 0], internals[:, 1]))
            return hidden, torch.stack((hidden, cell), dim=1)
        hidden = self.cell(x, internals)
        return hidden, hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step from zero internals (used when no internals are given)."""
        zeros = torch.zeros((x.shape[0], *self.internal_shape), device=x.device)
        return self.step(x, zeros)[0]


@LAYERS.register("rnn")
class RNN(Recurrent):
    """Elman RNN cell (tanh), see ``Recurrent``."""

    kind = "rnn"


@LAYERS.register("lstm")
class LSTM(Recurrent):
    """LSTM cell; internals hold hidden and cell state ``(2, size)``; see ``Recurrent``."""

    kind = "lstm"


@LAYERS.register("gru")
class GRU(Recurrent):
    """GRU cell, see ``Recurrent``."""

    kind = "gru"
