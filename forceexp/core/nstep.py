"""NStepWindows: per-slot windows of pending steps that turn into n-step transitions, vectorised."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from forceexp.errors import ConfigError, message


class Emission(NamedTuple):
    """Transitions that left the windows in one ``push``, in batch order then oldest first.

    ``E`` is the number of transitions emitted.
    """

    rows: np.ndarray  # (E,) int64: batch row of the push whose next state each one bootstraps from
    fields: dict[str, np.ndarray]  # key -> (E, *shape): the step's stored fields (states, actions…)
    rewards: np.ndarray  # (E,) float32: discounted reward sum up to the n-th step or the end
    discounts: np.ndarray  # (E,) float32: discount**k, 0.0 where the episode terminated


class NStepWindows:
    """Up to ``n_step`` pending steps per parallel slot.

    After each push, a slot whose window holds ``n_step`` steps emits its oldest step with
    ``rewards = sum_{i<n} discount**i * r_i`` and ``discounts = discount**n``; a slot whose episode
    ended (terminal 1 or 2) emits every pending step, step ``j`` of ``c`` with the reward sum up
    to the end and ``discounts = discount**(c - j)``, or 0 if terminal == 1. Both bootstrap from
    the pushed step's next state. Windows are stored left-aligned (position 0 is the oldest).

    Args:
        parallel: Number of slots.
        n_step: Window length, >= 1.
        discount: Reward discount in [0, 1].
        fields: ``{key: (shape, dtype)}`` of what is kept per step (besides the reward).
    """

    def __init__(
        self,
        parallel: int,
        n_step: int,
        discount: float,
        fields: dict[str, tuple[tuple[int, ...], type]],
    ) -> None:
        self.n_step, self.discount = n_step, discount
        self.buffers = {
            key: np.zeros((parallel, n_step, *shape), dtype=dtype)
            for key, (shape, dtype) in fields.items()
        }
        self.rewards = np.zeros((parallel, n_step), dtype=np.float64)
        self.count = np.zeros(parallel, dtype=np.int64)
        lag = np.arange(n_step)[:, None] - np.arange(n_step)[None, :]  # i - j
        self._kernel = np.where(lag >= 0, discount ** np.maximum(lag, 0), 0.0)  # (n, n)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the window state, by name (for saving and restoring)."""
        return {**self.buffers, "rewards": self.rewards, "count": self.count}

    def clear(self, slots: np.ndarray | slice) -> None:
        """Drop the pending steps of ``slots`` (no transitions are emitted)."""
        self.count[slots] = 0

    def push(
        self,
        slots: np.ndarray,
        fields: dict[str, np.ndarray],
        rewards: np.ndarray,
        terminals: np.ndarray,
    ) -> Emission:
        """Append one step to each slot's window and emit what is complete.

        Args:
            slots: Distinct slot indices, shape ``(B,)``.
            fields: ``{key: (B, *shape)}`` values of this step.
            rewards: Rewards, shape ``(B,)``.
            terminals: 0 running, 1 terminated, 2 truncated, shape ``(B,)``.

        Raises:
            ConfigError: a slot appears twice in ``slots``.
        """
        if len(np.unique(slots)) != len(slots):
            raise ConfigError(message("memory.add.slots", slots.tolist(), "distinct slots"))
        at = self.count[slots]
        for key, value in fields.items():
            self.buffers[key][slots, at] = value
        self.rewards[slots, at] = rewards
        self.count[slots] = count = at + 1
        done = terminals != 0
        emit = np.where(done, count, count == self.n_step)  # transitions per batch row
        rows = np.repeat(np.arange(len(slots)), emit)
        starts = np.repeat(np.cumsum(emit) - emit, emit)
        steps = np.arange(len(rows)) - starts  # window position of each emitted step
        owners = slots[rows]
        emission = Emission(
            rows=rows,
            fields={key: buffer[owners, steps] for key, buffer in self.buffers.items()},
            rewards=self._returns(owners, steps),
            discounts=self._discounts(count[rows] - steps, terminals[rows]),
        )
        self._advance(slots[~done & (count == self.n_step)])
        self.count[slots[done]] = 0
        return emission

    def _returns(self, owners: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """``sum_{i>=j} discount**(i-j) * r_i`` over each owner's pending steps from ``j``."""
        valid = np.arange(self.n_step)[None, :] < self.count[owners][:, None]
        sums = (self.rewards[owners] * valid) @ self._kernel  # (E, n): suffix sums per start j
        return sums[np.arange(len(owners)), steps].astype(np.float32)

    def _discounts(self, remaining: np.ndarray, terminals: np.ndarray) -> np.ndarray:
        """``discount**k`` for ``k`` remaining steps, 0 where the episode terminated."""
        return np.where(terminals == 1, 0.0, self.discount**remaining).astype(np.float32)

    def _advance(self, slots: np.ndarray) -> None:
        """Drop the oldest step of each full slot in ``slots`` (shift its window left)."""
        for buffer in (*self.buffers.values(), self.rewards):
            buffer[slots, :-1] = buffer[slots, 1:]
        self.count[slots] -= 1
