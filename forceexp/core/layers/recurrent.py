"""Recurrent layers: rnn/lstm/gru step per ``act``; input_rnn/lstm/gru run over a sequence.

input_* unroll a ``(T, F)`` input within one step and keep nothing. rnn/lstm/gru map a float
vector ``(F,)`` to ``(size,)`` and keep an internal state between calls. The network passes
internals explicitly (``step``); the agent stores them per parallel slot, resets them to zero
at episode starts, and PPO re-runs whole sequences in its update starting from the internals
stored with each rollout's first row.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from forceexp.core.layers.base import (
    LAYERS,
    Layer,
    check_positive,
    float_spec,
    make_activation,
)
from forceexp.errors import ConfigError, message
from forceexp.specs import TensorSpec

_CELLS: dict[str, type[nn.Module]] = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}
_SEQUENCES: dict[str, type[nn.Module]] = {"lstm": nn.LSTM, "gru": nn.GRU}


def _check_cell(path: str, cell: str, valid: dict[str, type[nn.Module]]) -> None:
    if cell not in valid:
        raise ConfigError(message(f"{path}.cell", cell, f"one of {', '.join(sorted(valid))}"))


class Recurrent(Layer):
    """Base of the recurrent layers: a torch cell over a rank-1 float input.

    Args:
        input_spec: Float input of shape ``(F,)`` (flatten images first); output ``(size,)``.
        path: Config path of the layer.
        size: Hidden units (>= 1).
        horizon: Truncated backpropagation through time in PPO's sequence re-run: the
            gradient through the internals is cut every ``horizon`` steps (0: at every step;
            None: never, the whole rollout sequence).
        bias: Whether the cell has biases.
        activation: Applied to the output, not the internals (default none; Tensorforce's
            default is ``'tanh'``).
        dropout: Dropout rate in [0, 1) on the output.
    """

    kind = "rnn"

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        size: int = 64,
        horizon: int | None = None,
        bias: bool = True,
        activation: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, path)
        spec = self.require_float(self.kind)
        check_positive(path, size=size)
        if len(spec.shape) != 1:
            raise ConfigError(
                f"{path}: {self.kind} expects a rank-1 input (F,); got shape {spec.shape}; "
                "add dict(type='flatten') before it"
            )
        if horizon is not None and (not isinstance(horizon, int) or horizon < 0):
            raise ConfigError(message(f"{path}.horizon", horizon, "an int >= 0 or None"))
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(message(f"{path}.dropout", dropout, "0 <= rate < 1"))
        self.size, self.horizon = size, horizon
        self.cell = _CELLS[self.kind](spec.shape[0], size, bias=bias)
        self.activation = make_activation(path, activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output_spec = float_spec((size,))

    @property
    def internal_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        """Shape of one row of internals (``(2, size)`` for LSTM: hidden and cell)."""
        return (2, self.size) if self.kind == "lstm" else (self.size,)

    def truncates(self, t: int) -> bool:
        """Whether the gradient through the internals is cut before re-run step ``t``."""
        if self.horizon is None or t == 0:
            return False
        return self.horizon == 0 or t % self.horizon == 0

    def step(
        self, x: torch.Tensor, internals: torch.Tensor, t: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``(B, F), (B, *internal_shape) -> (B, size), next internals``."""
        if t is not None and self.truncates(t):
            internals = internals.detach()
        x = x.float()
        if self.kind == "lstm":
            hidden, cell = self.cell(x, (internals[:, 0], internals[:, 1]))
            following = torch.stack((hidden, cell), dim=1)
        else:
            hidden = following = self.cell(x, internals)
        return self.dropout(self.activation(hidden)), following

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step from zero internals (used when no internals are given)."""
        return self.first_step(x)


@LAYERS.register("rnn")
class RNN(Recurrent):
    """A recurrent layer with a chosen cell: Elman (``'rnn'``, tanh), ``'lstm'`` or ``'gru'``.

    Args:
        input_spec: Float input of shape ``(F,)``; output ``(size,)``.
        path: Config path of the layer.
        cell: ``'rnn'`` (default), ``'lstm'`` or ``'gru'`` (Tensorforce's ``rnn(cell=...)``).
        size: Hidden units (>= 1).
        horizon: Truncated backpropagation through time, see ``Recurrent``.
        bias: Whether the cell has biases.
        activation: Applied to the output (default none).
        dropout: Dropout rate in [0, 1) on the output.
    """

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        cell: Literal["rnn", "lstm", "gru"] = "rnn",
        size: int = 64,
        horizon: int | None = None,
        bias: bool = True,
        activation: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        _check_cell(path, cell, _CELLS)
        self.kind = cell
        super().__init__(input_spec, path, size, horizon, bias, activation, dropout)


@LAYERS.register("lstm")
class LSTM(Recurrent):
    """LSTM cell; internals hold hidden and cell state ``(2, size)``; see ``Recurrent``."""

    kind = "lstm"


@LAYERS.register("gru")
class GRU(Recurrent):
    """GRU cell, see ``Recurrent``."""

    kind = "gru"


class _InputRecurrent(Layer):
    kind = "gru"

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        size: int = 64,
        return_final_state: bool = True,
        bias: bool = True,
        activation: str | None = "tanh",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, path)
        name = f"input_{self.kind}"
        spec = self.require_rank(name, 2, "(steps, features)")
        check_positive(path, size=size)
        if self.kind == "lstm" and return_final_state and size % 2:
            raise ConfigError(
                message(f"{path}.size", size, "an even int: the final state is hidden + cell")
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(message(f"{path}.dropout", dropout, "0 <= rate < 1"))
        hidden = size // 2 if self.kind == "lstm" and return_final_state else size
        self.rnn = _SEQUENCES[self.kind](spec.shape[1], hidden, bias=bias, batch_first=True)
        self.return_final_state = return_final_state
        self.activation = make_activation(path, activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        shape = (size,) if return_final_state else (spec.shape[0], size)
        self.output_spec = float_spec(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, F) -> (B, size)`` (final state) or ``(B, T, size)`` (every step)."""
        outputs, final = self.rnn(x.float())
        if not self.return_final_state:
            y = outputs
        elif self.kind == "lstm":
            y = torch.cat((final[0][-1], final[1][-1]), dim=-1)
        else:
            y = final[-1]
        return self.dropout(self.activation(y))


@LAYERS.register("input_rnn")
class InputRNN(_InputRecurrent):
    """A GRU or LSTM unrolled over a sequence input ``(T, F)`` within one step (no internals).

    Args:
        input_spec: Float input of shape ``(T, F)``.
        path: Config path of the layer.
        cell: ``'gru'`` or ``'lstm'``.
        size: Output units; with ``return_final_state`` an LSTM returns hidden and cell state
            concatenated (``size // 2`` each, so ``size`` must be even).
        return_final_state: Output the final state ``(size,)`` instead of every step's
            output ``(T, size)``.
        bias: Whether the cell has biases.
        activation: Applied to the output (default ``'tanh'``).
        dropout: Dropout rate in [0, 1) after the activation.
    """

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        cell: Literal["gru", "lstm"] = "gru",
        size: int = 64,
        return_final_state: bool = True,
        bias: bool = True,
        activation: str | None = "tanh",
        dropout: float = 0.0,
    ) -> None:
        _check_cell(path, cell, _SEQUENCES)
        self.kind = cell
        super().__init__(input_spec, path, size, return_final_state, bias, activation, dropout)


@LAYERS.register("input_lstm")
class InputLSTM(_InputRecurrent):
    """``input_rnn`` with an LSTM cell (same arguments except ``cell``)."""

    kind = "lstm"


@LAYERS.register("input_gru")
class InputGRU(_InputRecurrent):
    """``input_rnn`` with a GRU cell (same arguments except ``cell``)."""

    kind = "gru"
