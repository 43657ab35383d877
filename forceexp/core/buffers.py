"""RolloutBuffer: per-parallel-slot experience rows ``(T, N, ...)`` with in-flight acts.

A row is written in two halves: ``add_act`` stores states, masks, actions, log-prob and value;
``add_observe`` stores reward and terminal. A slot may have one acted-but-unobserved row (in
flight); its value is the bootstrap value of the slot's last observed row, and the row is carried
over into the next rollout after an update.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from forceexp.core.returns import gae, nstep_advantages
from forceexp.specs import Specs

Tensors = dict[str, torch.Tensor]
Values = dict[str, torch.Tensor] | dict[str, np.ndarray]
_TORCH_DTYPES = {"float": torch.float32, "int": torch.int64, "bool": torch.bool}


class Batch(NamedTuple):
    """Flattened rollout ``(B, ...)`` ready for minibatch updates."""

    states: Tensors
    masks: Tensors
    actions: Tensors
    log_prob: torch.Tensor
    value: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


class Sequences(NamedTuple):
    """Rollout kept as ``(T, N, ...)`` per-slot sequences, for recurrent updates."""

    states: Tensors
    masks: Tensors
    actions: Tensors
    log_prob: torch.Tensor
    value: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    valid: torch.Tensor  # (T, N) bool: observed rows
    starts: torch.Tensor  # (T, N) bool: an episode starts here (internals reset)
    internals: Tensors  # {path: (N, *shape)} internals before row 0

    def rows(self) -> Batch:
        """The valid rows flattened ``(B, ...)`` in time-major order, as a ``Batch``."""
        valid = self.valid
        return Batch(
            {name: x[valid] for name, x in self.states.items()},
            {name: x[valid] for name, x in self.masks.items()},
            {name: x[valid] for name, x in self.actions.items()},
            *(x[valid] for x in (self.log_prob, self.value, self.advantages, self.returns)),
        )


class RolloutBuffer:
    """Fixed-capacity storage of ``capacity`` rows for each of ``num_slots`` parallel slots.

    Args:
        states: State specs (stored after normalization, as the policy saw them).
        actions: Action specs (raw samples, before clipping).
        num_slots: Number of parallel interactions N.
        capacity: Rows per slot (at least the rollout length + 1 for the in-flight row).
        device: Torch device of the storage.
        internals: ``{path: shape}`` of recurrent internals stored with each row (if any).
    """

    def __init__(
        self,
        states: Specs,
        actions: Specs,
        num_slots: int,
        capacity: int,
        device: torch.device,
        internals: dict[str, tuple[int, ...]] | None = None,
    ) -> None:
        self.num_slots, self.capacity, self.device = num_slots, capacity, device
        self._action_specs = actions

        def alloc(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
            return torch.zeros((capacity, num_slots, *shape), dtype=dtype, device=device)

        self.states = {n: alloc(s.shape, _TORCH_DTYPES[s.type]) for n, s in states.items}
        self.actions = {n: alloc(s.shape, _TORCH_DTYPES[s.type]) for n, s in actions.items}
        self.masks: Tensors = {}
        self.log_prob = alloc((), torch.float32)
        self.value = alloc((), torch.float32)
        self.reward = alloc((), torch.float32)
        self.final_value = alloc((), torch.float32)
        self.terminal = alloc((), torch.int64)
        self.internals = {p: alloc(shape, torch.float32) for p, shape in (internals or {}).items()}
        self.acted = np.zeros(num_slots, dtype=np.int64)
        self.observed = np.zeros(num_slots, dtype=np.int64)
        self.observed_rows = 0  # observed.sum(), kept as a Python int (checked every step)
        self._all = np.arange(num_slots)
        self._all_list = self._all.tolist()
        self._host = torch.device(device).type == "cpu"  # write through NumPy views (cheaper)
        self._views: dict[int, np.ndarray] = {}  # id(tensor) -> its NumPy view (same memory)

    def _columns(self, slots: np.ndarray) -> Any:
        """``slots`` as a NumPy index: ``slice(None)`` for every slot in order (no gather)."""
        if len(slots) == self.num_slots and slots.tolist() == self._all_list:
            return slice(None)
        return slots

    def _index(self, columns: Any, counts: np.ndarray, offset: int = 0) -> tuple:
        """Storage index of row ``counts[slot] + offset`` of each slot in ``columns``."""
        rows = counts[columns]
        first = int(rows[0])
        if rows.tolist().count(first) == len(rows):  # one row for all: a cheaper basic index
            row: Any = first + offset
        else:
            row = (
                rows + offset if self._host else torch.as_tensor(rows + offset, device=self.device)
            )
        if self._host or isinstance(columns, slice):
            return row, columns
        return row, torch.as_tensor(columns, device=self.device)

    def _put(self, target: torch.Tensor, index: tuple, value: torch.Tensor | np.ndarray) -> None:
        """``target[index] = value``; on the CPU through NumPy views, where indexing costs less."""
        if self._host:
            view = self._views.get(id(target))
            if view is None:
                view = self._views[id(target)] = target.numpy()
            view[index] = value if isinstance(value, np.ndarray) else value.numpy()
        else:
            target[index] = torch.as_tensor(value, device=self.device)

    def add_act(
        self,
        slots: np.ndarray,
        states: Values,
        masks: Values,
        actions: Values,
        log_prob: torch.Tensor | np.ndarray,
        value: torch.Tensor | np.ndarray,
        internals: Tensors | None = None,
    ) -> None:
        """Store the acted half of a row for each slot in ``slots`` (``(B,)`` each).

        Values may be tensors or NumPy arrays (the CPU fast path hands over its arrays).
        ``internals`` are the recurrent internals the row was acted with (before the step).
        """
        columns = self._columns(slots)
        index = self._index(columns, self.acted)
        for path, x in (internals or {}).items():
            self._put(self.internals[path], index, x)
        for name, x in states.items():
            self._put(self.states[name], index, x)
        for name, mask in masks.items():
            if name not in self.masks:
                spec = self._action_specs[name]
                shape = (self.capacity, self.num_slots, *spec.shape, spec.num_values)
                self.masks[name] = torch.ones(shape, dtype=torch.bool, device=self.device)
            self._put(self.masks[name], index, mask)
        for name in self.masks.keys() - masks.keys():
            self.masks[name][index] = True  # no mask this step: every value allowed
        for name, x in actions.items():
            self._put(self.actions[name], index, x)
        self._put(self.log_prob, index, log_prob)
        self._put(self.value, index, value)
        self.acted[columns] += 1

    def add_observe(
        self, slots: np.ndarray, reward: np.ndarray | torch.Tensor, terminal: np.ndarray
    ) -> None:
        """Store the observed half (reward, terminal) of each slot's in-flight row."""
        columns = self._columns(slots)
        index = self._index(columns, self.observed)
        self._put(self.reward, index, reward)
        self._put(self.terminal, index, terminal)
        self.observed[columns] += 1
        self.observed_rows += len(slots)

    def set_final_value(self, slots: np.ndarray, value: torch.Tensor) -> None:
        """Set the value of the final (post-truncation) state for each slot's last observed row."""
        index = self._index(self._columns(slots), self.observed, -1)
        self._put(self.final_value, index, value)

    def is_full(self, rollout_rows: int, pending: np.ndarray | None = None) -> bool:
        """Whether ``rollout_rows`` rows are observed in total, or a slot ran out of space.

        ``pending``: slots about to be observed once more, counted as if already observed.
        """
        total = self.observed_rows + (0 if pending is None else len(pending))
        if total >= rollout_rows:
            return True
        if total < self.capacity - 1:  # no slot can be out of space yet
            return False
        observed = self.observed
        if pending is not None:
            observed = observed.copy()
            observed[pending] += 1
        return int(observed.max()) >= self.capacity - 1

    def needs_bootstrap(self) -> np.ndarray:
        """Slots whose last observed row continues but has no in-flight row to bootstrap from."""
        last = np.maximum(self.observed - 1, 0)
        running = self.terminal[torch.as_tensor(last), torch.as_tensor(self._all)].cpu().numpy()
        return np.flatnonzero((self.observed > 0) & (running == 0) & (self.acted == self.observed))

    def _advantages(
        self, bootstrap: torch.Tensor, discount: float, gae_lambda: float, horizon: int | None
    ) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(steps, value (T, N), advantages (T, N), valid (T, N))`` by GAE (or n-step)."""
        steps = int(self.observed.max())
        lengths = torch.as_tensor(self.observed, device=self.device)
        next_value = self.value[1 : steps + 1].clone()
        needs = self.needs_bootstrap()
        if len(needs):
            rows = torch.as_tensor(self.observed[needs] - 1, device=self.device)
            cols = torch.as_tensor(needs, device=self.device)
            next_value[rows, cols] = bootstrap[cols]
        terminal = self.terminal[:steps]
        next_value = torch.where(terminal == 2, self.final_value[:steps], next_value)
        value = self.value[:steps]
        if horizon is None:
            advantages = gae(
                self.reward[:steps], value, next_value, terminal, discount, gae_lambda, lengths
            )
        else:
            advantages = nstep_advantages(
                self.reward[:steps], value, next_value, terminal, discount, horizon, lengths
            )
        rows = torch.arange(steps, device=self.device).unsqueeze(1)
        valid = rows < lengths.unsqueeze(0)
        return steps, value, advantages, valid

    def batch(
        self,
        bootstrap: torch.Tensor,
        discount: float,
        gae_lambda: float,
        horizon: int | None = None,
    ) -> Batch:
        """Compute GAE (or n-step advantages) and flatten all observed rows.

        Args:
            bootstrap: ``(N,)`` values for slots listed by ``needs_bootstrap`` (others ignored).
            discount: Discount factor.
            gae_lambda: GAE lambda.
            horizon: n of n-step advantages (``returns.nstep_advantages``) instead of GAE.
        """
        steps, value, advantages, valid = self._advantages(bootstrap, discount, gae_lambda, horizon)
        return Batch(
            states={n: x[:steps][valid] for n, x in self.states.items()},
            masks={n: x[:steps][valid] for n, x in self.masks.items()},
            actions={n: x[:steps][valid] for n, x in self.actions.items()},
            log_prob=self.log_prob[:steps][valid],
            value=value[valid],
            advantages=advantages[valid],
            returns=(advantages + value)[valid],
        )

    def sequences(
        self,
        bootstrap: torch.Tensor,
        discount: float,
        gae_lambda: float,
        horizon: int | None = None,
    ) -> Sequences:
        """As ``batch``, but keep the ``(T, N)`` layout with episode starts and first internals."""
        steps, value, advantages, valid = self._advantages(bootstrap, discount, gae_lambda, horizon)
        starts = torch.zeros_like(valid)
        starts[1:] = self.terminal[: steps - 1] != 0
        return Sequences(
            states={n: x[:steps] for n, x in self.states.items()},
            masks={n: x[:steps] for n, x in self.masks.items()},
            actions={n: x[:steps] for n, x in self.actions.items()},
            log_prob=self.log_prob[:steps],
            value=value,
            advantages=advantages,
            returns=advantages + value,
            valid=valid,
            starts=starts,
            internals={p: x[0] for p, x in self.internals.items()},
        )

    def carry_over(self) -> None:
        """Move each slot's in-flight row to row 0 and forget the observed rows."""
        flying = np.flatnonzero(self.acted > self.observed)
        if len(flying):
            src = torch.as_tensor(self.observed[flying], device=self.device)
            cols = torch.as_tensor(flying, device=self.device)
            tensors = [*self.states.values(), *self.masks.values(), *self.actions.values()]
            tensors += list(self.internals.values())
            for x in [*tensors, self.log_prob, self.value]:
                x[0, cols] = x[src, cols]
        self.acted[:] = 0
        self.acted[flying] = 1
        self.observed[:] = 0
        self.observed_rows = 0
