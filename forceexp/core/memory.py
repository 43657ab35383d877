"""ReplayMemory: a NumPy ring buffer of n-step transitions; uniform, recent or prioritized draws."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
import torch

from forceexp.core.nstep import NStepWindows
from forceexp.core.sumtree import SumTree
from forceexp.errors import CheckpointError, ConfigError, message, unknown_name
from forceexp.specs import Specs

Array = np.ndarray | torch.Tensor
Sampling = Literal["uniform", "recent", "prioritized"]
SAMPLINGS: tuple[str, ...] = get_args(Sampling)
_GROUPS = ("states", "masks", "actions", "next_states", "next_masks", "internals", "next_internals")
_NO_INTERNALS: dict[str, torch.Tensor] = {}
_CONFIG_KEYS = ("capacity", "parallel", "n_step", "sampling")


class ReplaySample(NamedTuple):
    """A batch of ``B`` transitions on the memory's device."""

    states: dict[str, torch.Tensor]  # (B, *shape), dtype per spec (float32/int64/bool)
    masks: dict[str, torch.Tensor]  # action name -> (B, *shape, num_values) bool (acting masks)
    actions: dict[str, torch.Tensor]  # (B, *shape)
    rewards: torch.Tensor  # (B,) float32: n-step discounted reward sum
    next_states: dict[str, torch.Tensor]  # state after the n-th step (or the final state)
    next_masks: dict[str, torch.Tensor]  # masks stored with next_states
    discounts: torch.Tensor  # (B,) float32: discount**k to bootstrap with, 0.0 if terminated
    weights: torch.Tensor  # (B,) float32 importance weights (ones unless prioritized)
    indices: np.ndarray  # (B,) int64 storage rows, for update_priorities
    #: recurrent internals the network acted with on ``states``: layer path -> (B, *shape)
    internals: dict[str, torch.Tensor] = _NO_INTERNALS
    #: internals following the act (what the network holds on ``next_states``)
    next_internals: dict[str, torch.Tensor] = _NO_INTERNALS

    def rows(self, start: int, stop: int) -> ReplaySample:
        """Transitions ``start:stop`` of this sample (views): one batch of a phase's sample."""

        def part(group: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {name: x[start:stop] for name, x in group.items()} if group else group

        return ReplaySample(
            states=part(self.states),
            masks=part(self.masks),
            actions=part(self.actions),
            rewards=self.rewards[start:stop],
            next_states=part(self.next_states),
            next_masks=part(self.next_masks),
            discounts=self.discounts[start:stop],
            weights=self.weights[start:stop],
            indices=self.indices[start:stop],
            internals=part(self.internals),
            next_internals=part(self.next_internals),
        )


class ReplayMemory:
    """Fixed-capacity replay of transitions from ``parallel`` environments, oldest overwritten.

    Every component is preallocated as a NumPy array ``(capacity, *shape)``: states and
    next_states per state spec, actions per action spec, masks and next_masks ``(capacity, *shape,
    num_values)`` bool per name in ``mask_names``, plus float32 rewards and discounts. Bytes per
    transition (``bytes_per_transition``) = ``2 * sum(state sizes * itemsize) + sum(action sizes *
    itemsize) + 2 * sum(mask sizes) + 8``, plus 8 (a float64 leaf) to 16 (with the tree's inner
    nodes) when prioritized; ``nbytes`` is the total, n-step windows included. CartPole (4 float32
    states, one int action with a mask of 2): 52 bytes, so 1e6 transitions take ~52 MB. With
    ``internals`` (recurrent networks) each transition also keeps the float32 internals the
    network acted with and those following the act (``2 * 4 * sum(internal sizes)`` bytes), so
    the update can evaluate a recurrent network one step from stored internals.

    Args:
        states: State specs.
        actions: Action specs.
        capacity: Transitions kept, >= 1.
        parallel: Number of parallel environment slots, >= 1.
        sampling: ``'uniform'`` (with replacement), ``'recent'`` (the newest ``batch_size``
            transitions, newest last) or ``'prioritized'`` (proportional, Schaul et al. 2015).
        n_step: Steps summed into each transition's reward, >= 1.
        discount: Reward discount in [0, 1].
        alpha: Priority exponent, >= 0 (0: uniform).
        beta: Importance-weight exponent in [0, 1]; ``sample(beta=...)`` overrides it.
        priority_epsilon: Added to ``|TD error|`` before the exponent, > 0.
        mask_names: Int action names whose masks are stored (all-True where not given).
        device: Torch device of sampled tensors (storage stays in host memory).
        seed: Seed of the memory's own NumPy generator (sampling).
        internals: ``{layer path: shape}`` of recurrent internals stored with each transition
            (``internals`` and ``next_internals`` of ``add`` and ``ReplaySample``); empty: none.

    Raises:
        ConfigError: an argument is outside the ranges above, ``sampling`` is unknown, or a
            mask name is not an int action with ``num_values``.
    """

    def __init__(
        self,
        states: Specs,
        actions: Specs,
        capacity: int,
        parallel: int = 1,
        *,
        sampling: Sampling = "uniform",
        n_step: int = 1,
        discount: float = 0.99,
        alpha: float = 0.6,
        beta: float = 0.4,
        priority_epsilon: float = 1e-6,
        mask_names: Sequence[str] = (),
        device: str | torch.device = "cpu",
        seed: int | None = None,
        internals: Mapping[str, tuple[int, ...]] | None = None,
    ) -> None:
        _check_arguments(capacity, parallel, sampling, n_step, discount, alpha, beta)
        if not priority_epsilon > 0:
            raise ConfigError(message("memory.priority_epsilon", priority_epsilon, "a float > 0"))
        self.capacity, self.parallel, self.sampling = capacity, parallel, sampling
        self.n_step, self.discount, self.alpha, self.beta = n_step, discount, alpha, beta
        self.priority_epsilon, self.device = priority_epsilon, torch.device(device)
        self._specs = _component_specs(states, actions, mask_names)
        for path, shape in (internals or {}).items():
            for group in ("internals", "next_internals"):
                self._specs[f"{group}/{path}"] = (tuple(shape), np.float32)
        self.storage = {
            key: np.zeros((capacity, *shape), dtype=dtype)
            for key, (shape, dtype) in self._specs.items()
        }
        #: (storage key, group, name, error path, shape, dtype) per component, made once
        self._plan = [
            (key, *key.split("/", 1), f"memory.add.{key.replace('/', '.')}", shape, dtype)
            for key, (shape, dtype) in self._specs.items()
        ]
        self._all_true: dict[tuple[int, ...], np.ndarray] = {}  # read-only absent masks
        self._discounts = np.array([self.discount, 0.0, self.discount], np.float32)
        self.storage["rewards"] = np.zeros(capacity, dtype=np.float32)
        self.storage["discounts"] = np.zeros(capacity, dtype=np.float32)
        self.position = self.size = 0
        self._rng = np.random.default_rng(seed)
        self._tree = SumTree(capacity) if sampling == "prioritized" else None
        self.max_priority = 1.0
        acted = {k: v for k, v in self._specs.items() if not k.startswith("next_")}
        self._windows = NStepWindows(parallel, n_step, discount, acted) if n_step > 1 else None

    # ------------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return self.size

    @property
    def prioritized(self) -> bool:
        """Whether sampling is prioritized (``update_priorities`` has an effect)."""
        return self._tree is not None

    @property
    def bytes_per_transition(self) -> int:
        """Storage bytes per transition (sum tree nodes counted as 16 bytes when prioritized)."""
        row = sum(array[0].nbytes for array in self.storage.values())
        return row + (16 if self.prioritized else 0)

    @property
    def nbytes(self) -> int:
        """Total bytes of storage, sum tree and n-step windows."""
        windows = self._windows.arrays().values() if self._windows else ()
        tree = self._tree.nodes.nbytes if self._tree else 0
        return sum(array.nbytes for array in (*self.storage.values(), *windows)) + tree

    # ------------------------------------------------------------------------ adding
    def add(
        self,
        slots: np.ndarray,
        states: Mapping[str, Array],
        masks: Mapping[str, Array],
        actions: Mapping[str, Array],
        rewards: np.ndarray,
        terminals: np.ndarray,
        next_states: Mapping[str, Array],
        next_masks: Mapping[str, Array],
        internals: Mapping[str, Array] | None = None,
        next_internals: Mapping[str, Array] | None = None,
    ) -> None:
        """Add one step of ``B`` parallel slots; complete (n-step) transitions enter the memory.

        Args:
            slots: Slot indices in ``[0, parallel)``, shape ``(B,)`` (distinct when n_step > 1).
            states: ``{name: (B, *shape)}`` states acted on.
            masks: ``{action name: (B, *shape, num_values)}`` bool masks acted with; missing
                names in ``mask_names`` are stored all-True, others are ignored.
            actions: ``{name: (B, *shape)}`` actions taken.
            rewards: Rewards, shape ``(B,)``.
            terminals: 0 running, 1 terminated (no bootstrap), 2 truncated (bootstrap from
                ``next_states``, the true final observation), shape ``(B,)``.
            next_states: ``{name: (B, *shape)}`` states after the step.
            next_masks: Masks of ``next_states``, like ``masks``.
            internals: ``{layer path: (B, *shape)}`` internals acted with (required when the
                memory was created with ``internals``; ignored otherwise).
            next_internals: The internals following the act, like ``internals``.

        Raises:
            ConfigError: a component is missing or has the wrong shape, a slot is out of range
                (or repeated with n_step > 1), or a terminal is not 0, 1 or 2.
        """
        slots = np.asarray(slots, dtype=np.int64)
        batch = len(slots)
        if batch and (slots.min() < 0 or slots.max() >= self.parallel):
            raise ConfigError(
                message("memory.add.slots", slots.tolist(), f"in [0, {self.parallel})")
            )
        rewards = _batch("memory.add.rewards", rewards, (), np.float32, batch)
        terminals = _batch("memory.add.terminals", terminals, (), np.int64, batch)
        if batch and (terminals.min() < 0 or terminals.max() > 2):
            raise ConfigError(message("memory.add.terminals", terminals.tolist(), "0, 1 or 2"))
        given = {"states": states, "masks": masks, "actions": actions}
        given.update(next_states=next_states, next_masks=next_masks)
        given.update(internals=internals or {}, next_internals=next_internals or {})
        fields = self._fields(given, batch)
        if self._windows is None:  # n_step == 1: every step is a transition (vectorised)
            discounts = self._discounts[terminals]  # 0.0 where terminated (1)
            self._write({**fields, "rewards": rewards, "discounts": discounts})
            return
        nexts = {k: fields.pop(k) for k in list(fields) if k.startswith("next_")}
        out = self._windows.push(slots, fields, rewards, terminals)
        nexts = {key: value[out.rows] for key, value in nexts.items()}
        self._write({**out.fields, **nexts, "rewards": out.rewards, "discounts": out.discounts})

    def _fields(self, given: dict[str, Mapping[str, Array]], batch: int) -> dict[str, np.ndarray]:
        """Convert and check every stored component; absent masks become all-True."""
        fields = {}
        for key, group, name, path, shape, dtype in self._plan:
            value = given[group].get(name)
            if value is None and group.endswith("masks"):
                value = self._all_true.get((batch, *shape))
                if value is None:
                    value = np.ones((batch, *shape), dtype=bool)
                    value.flags.writeable = False
                    self._all_true[value.shape] = value
            elif value is None:
                raise ConfigError(
                    f"memory.add.{group}: missing {name!r}; got {sorted(given[group])}"
                )
            fields[key] = _batch(path, value, shape, dtype, batch)
        return fields

    def _write(self, fields: dict[str, np.ndarray]) -> None:
        """Write ``E`` transitions (``{storage key: (E, ...)}``) at the ring position.

        Only the newest ``capacity`` are written when ``E`` exceeds it.
        """
        count = len(fields["rewards"])
        if count > self.capacity:
            fields = {key: value[count - self.capacity :] for key, value in fields.items()}
            count = self.capacity
        if count == 0:
            return
        end = self.position + count
        rows: Any = slice(self.position, end)
        if end > self.capacity:
            rows = np.arange(self.position, end) % self.capacity
        for key, value in fields.items():
            self.storage[key][rows] = value
        if self._tree is not None:
            self._tree.update(rows, self.max_priority)
        self.position = end % self.capacity
        self.size = min(self.size + count, self.capacity)

    def clear_pending(self, slots: np.ndarray | None = None) -> None:
        """Drop the unfinished n-step windows of ``slots`` (all slots if None), e.g. on reset."""
        if self._windows is not None:
            self._windows.clear(slice(None) if slots is None else np.asarray(slots, dtype=np.int64))

    # ------------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, beta: float | None = None) -> ReplaySample:
        """Draw ``batch_size`` transitions (fewer for ``'recent'`` when fewer are stored).

        Args:
            batch_size: Number of transitions B, >= 1.
            beta: Importance-weight exponent in [0, 1] for this call (prioritized only);
                None uses the constructor's ``beta``.

        Raises:
            ConfigError: ``batch_size`` < 1, ``beta`` outside [0, 1], or the memory is empty.
        """
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ConfigError(message("memory.sample.batch_size", batch_size, "an int >= 1"))
        beta = self.beta if beta is None else beta
        if not 0.0 <= beta <= 1.0:
            raise ConfigError(message("memory.sample.beta", beta, "a float in [0, 1]"))
        if self.size == 0:
            raise ConfigError("memory.sample: the memory is empty; add transitions before sampling")
        weights = None
        if self.sampling == "recent":
            count = min(batch_size, self.size)
            indices = (self.position - count + np.arange(count)) % self.capacity
        elif self._tree is not None:
            indices, weights = self._prioritized(batch_size, beta)
        else:
            indices = self._rng.integers(0, self.size, size=batch_size)
        if weights is None:
            weights = np.ones(len(indices), dtype=np.float32)
        return self._gather(indices.astype(np.int64), weights)

    def _prioritized(self, batch_size: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
        """Stratified proportional draw: one value per equal segment of the priority total."""
        assert self._tree is not None
        total = self._tree.total
        targets = (np.arange(batch_size) + self._rng.random(batch_size)) * (total / batch_size)
        indices = np.minimum(self._tree.find(targets), self.size - 1)
        probabilities = self._tree.priorities[indices] / total
        weights = (self.size * probabilities) ** -beta
        return indices, (weights / weights.max()).astype(np.float32)

    def _gather(self, indices: np.ndarray, weights: np.ndarray) -> ReplaySample:
        """Rows ``indices`` of every component as tensors on the device."""

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).to(self.device)

        groups: dict[str, dict[str, torch.Tensor]] = {group: {} for group in _GROUPS}
        for key in self._specs:
            group, name = key.split("/", 1)
            groups[group][name] = tensor(self.storage[key][indices])
        return ReplaySample(
            rewards=tensor(self.storage["rewards"][indices]),
            discounts=tensor(self.storage["discounts"][indices]),
            weights=tensor(weights),
            indices=indices,
            **groups,
        )

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set the priorities of sampled rows to ``(|priorities| + priority_epsilon) ** alpha``.

        Ignored unless ``sampling == 'prioritized'``.

        Args:
            indices: Storage rows from ``ReplaySample.indices``, shape ``(B,)``.
            priorities: Absolute TD errors (or any non-negative score), shape ``(B,)``.

        Raises:
            ConfigError: shapes differ, a row is not stored, or a priority is NaN or inf.
        """
        if self._tree is None:
            return
        indices = np.asarray(indices, dtype=np.int64)
        priorities = _batch("memory.priorities", priorities, (), np.float64, len(indices))
        if len(indices) and (indices.min() < 0 or indices.max() >= self.size):
            raise ConfigError(
                message("memory.indices", indices.tolist(), f"stored rows in [0, {self.size})")
            )
        if not np.all(np.isfinite(priorities)):
            raise ConfigError(message("memory.priorities", priorities.tolist(), "finite values"))
        values = (np.abs(priorities) + self.priority_epsilon) ** self.alpha
        self._tree.update(indices, values)
        if len(values):
            self.max_priority = max(self.max_priority, float(values.max()))

    # ------------------------------------------------------------------------ saving
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, as tensors, ints, floats and str (flat keys).

        Tensors share memory with the live storage (like ``nn.Module.state_dict``): save them
        before the next ``add``. Keys: the config (``capacity``, ``parallel``, ``n_step``,
        ``sampling``), ``position``, ``size``, ``max_priority``, ``rng`` (JSON of the generator
        state), ``storage/<component>``, ``priorities`` (prioritized) and ``pending/<field>``
        (n_step > 1).
        """
        state: dict[str, Any] = {key: getattr(self, key) for key in _CONFIG_KEYS}
        state.update(position=self.position, size=self.size, max_priority=self.max_priority)
        state["rng"] = json.dumps(self._rng.bit_generator.state)
        state.update({key: torch.from_numpy(array) for key, array in self._arrays().items()})
        return state

    def _arrays(self) -> dict[str, np.ndarray]:
        """Every saved array by state-dict key (views of the live storage)."""
        arrays = {f"storage/{key}": array for key, array in self.storage.items()}
        if self._tree is not None:
            arrays["priorities"] = self._tree.priorities
        if self._windows is not None:
            arrays.update({f"pending/{k}": v for k, v in self._windows.arrays().items()})
        return arrays

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned (tensors, or NumPy arrays as read from .npz).

        Everything is checked before anything changes, so a failed load leaves the memory as is.

        Raises:
            CheckpointError: a key is missing, or a config value, shape or dtype does not match
                this memory (the message names the key).
        """
        for key in _CONFIG_KEYS:
            saved = _scalar(state, key, type(getattr(self, key)))
            if saved != getattr(self, key):
                raise CheckpointError(
                    f"memory state {key!r}: {saved!r} does not match this memory's "
                    f"{getattr(self, key)!r}; create the memory with the saved {key}"
                )
        position, size = _scalar(state, "position", int), _scalar(state, "size", int)
        if not (0 <= position < self.capacity and 0 <= size <= self.capacity):
            raise CheckpointError(f"memory state: position {position} / size {size} out of range")
        arrays = {key: _saved_array(state, key, live) for key, live in self._arrays().items()}
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = json.loads(_scalar(state, "rng", str))
        except (ValueError, TypeError, KeyError) as error:
            raise CheckpointError(
                f"memory state 'rng': unreadable generator state ({error})"
            ) from None
        for key, live in self._arrays().items():
            live[...] = arrays[key]
        if self._tree is not None:
            self._tree.update(slice(None), arrays["priorities"])
        self.position, self.size, self._rng = position, size, rng
        self.max_priority = _scalar(state, "max_priority", float)


# ---------------------------------------------------------------------------- helpers
def _check_arguments(
    capacity: int,
    parallel: int,
    sampling: str,
    n_step: int,
    discount: float,
    alpha: float,
    beta: float,
) -> None:
    """Raise ConfigError for the first constructor argument out of range."""
    for name, value in (("capacity", capacity), ("parallel", parallel), ("n_step", n_step)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(message(f"memory.{name}", value, "an int >= 1"))
    if sampling not in SAMPLINGS:
        raise unknown_name("memory.sampling", sampling, SAMPLINGS, "sampling")
    for name, value in (("discount", discount), ("beta", beta)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(message(f"memory.{name}", value, "a float in [0, 1]"))
    if not alpha >= 0.0:
        raise ConfigError(message("memory.alpha", alpha, "a float >= 0"))


def _component_specs(
    states: Specs, actions: Specs, mask_names: Sequence[str]
) -> dict[str, tuple[tuple[int, ...], type]]:
    """``{'<group>/<name>': (shape, dtype)}`` of every per-transition component but rewards."""
    masks = {}
    for name in mask_names:
        spec = dict(actions.items).get(name)
        if spec is None or spec.type != "int" or spec.num_values is None:
            valid = [n for n, s in actions.items if s.type == "int" and s.num_values is not None]
            raise ConfigError(message("memory.mask_names", name, f"an int action name in {valid}"))
        masks[name] = ((*spec.shape, spec.num_values), np.bool_)
    specs = {name: (spec.shape, spec.dtype) for name, spec in states.items}
    out = {f"states/{name}": value for name, value in specs.items()}
    out.update({f"masks/{name}": value for name, value in masks.items()})
    out.update({f"actions/{name}": (spec.shape, spec.dtype) for name, spec in actions.items})
    out.update({f"next_states/{name}": value for name, value in specs.items()})
    out.update({f"next_masks/{name}": value for name, value in masks.items()})
    return out


def _batch(path: str, value: Any, shape: tuple[int, ...], dtype: type, batch: int) -> np.ndarray:
    """``value`` (NumPy array or CPU tensor) as a ``(batch, *shape)`` array of ``dtype``."""
    if isinstance(value, torch.Tensor):
        value = value.numpy()
    array = np.asarray(value, dtype=dtype)
    if array.shape != (batch, *shape):
        raise ConfigError(message(path, f"shape {array.shape}", f"shape {(batch, *shape)}"))
    return array


def _scalar(state: Mapping[str, Any], key: str, kind: type) -> Any:
    """``state[key]`` as a plain ``kind`` (0-d arrays come back from .npz files)."""
    if key not in state:
        raise CheckpointError(f"memory state: missing key {key!r}")
    value = state[key]
    return kind(value.item() if isinstance(value, np.ndarray | torch.Tensor) else value)


def _saved_array(state: Mapping[str, Any], key: str, live: np.ndarray) -> np.ndarray:
    """``state[key]`` as a NumPy array checked against the shape and dtype of ``live``."""
    if key not in state:
        raise CheckpointError(f"memory state: missing key {key!r}")
    value = state[key]
    array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.shape != live.shape or array.dtype != live.dtype:
        raise CheckpointError(
            f"memory state {key!r}: {array.dtype}{list(array.shape)} does not match this memory's "
            f"{live.dtype}{list(live.shape)} (capacity, parallel, n_step or specs differ)"
        )
    return array
