"""InputConversion: states and masks in, actions out, for ``Agent`` (checked, cheap when simple).

A mixin: it uses the ``Agent`` attributes ``input_specs`` (the states before preprocessing),
``action_specs``, ``parallel_interactions``, ``device``, ``_on_cpu``, ``_all_slots``,
``_all_list`` (the same indices as a list) and ``_mask_names``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from forceexp.errors import ConfigError, brief, message
from forceexp.specs import check_array

Tensors = dict[str, torch.Tensor]
MASK_SUFFIX = "_mask"  # `<action>_mask` state entries hold action masks


class InputConversion:
    """Validation and conversion of ``act``/``observe`` arguments."""

    def _slots(self, parallel: Any, size: int, batched: bool) -> np.ndarray:
        if batched:
            if np.ndim(parallel) == 0:
                if size != self.parallel_interactions or parallel != 0:
                    raise ConfigError(
                        f"parallel: a batch of {size} needs a list of {size} slot indices "
                        f"(or exactly parallel_interactions={self.parallel_interactions} rows)"
                    )
                return self._all_slots
            slots = np.asarray(parallel, dtype=np.int64)
            if slots.shape != (size,):
                raise ConfigError(f"parallel: {len(slots)} slot indices for a batch of {size}")
            if size == self.parallel_interactions and slots.tolist() == self._all_list:
                return self._all_slots  # every slot in order (the runner's usual batch): valid
        elif isinstance(parallel, int | np.integer) and 0 <= parallel < self.parallel_interactions:
            return self._all_slots[parallel : parallel + 1]  # the common case, no checks needed
        else:
            slots = np.asarray([parallel], dtype=np.int64)
        if slots.min() < 0 or slots.max() >= self.parallel_interactions:
            raise ConfigError(
                message("parallel", parallel, f"slot indices in [0, {self.parallel_interactions})")
            )
        return slots

    def _columns(self, slots: np.ndarray) -> Any:
        """Index of ``slots`` in per-slot arrays: ``slice(None)`` for all (a view, no gather)."""
        return slice(None) if slots is self._all_slots else slots

    def _to_batch(self, states: Any, batched: bool | None = None) -> tuple[Tensors, Tensors, bool]:
        """Split states and masks, check them, and stack to ``(B, ...)`` tensors."""
        specs = self.input_specs
        if isinstance(states, np.ndarray) and specs.single:  # the common case: one plain array
            values, masks = {"state": states}, {}
        else:
            values, masks, from_list = self._split(states)
            batched = True if from_list else batched
        first_name, first_spec = specs.items[0]
        if batched is None:
            batched = np.ndim(values[first_name]) == len(first_spec.shape) + 1
        ndim = int(batched)
        tensors = {}
        for name, spec in specs.items:
            arr = check_array(f"states.{name}", spec, values[name], ndim)
            arr = arr if batched else arr[None]
            # from_numpy shares memory (no copy); it needs a writeable array
            tensor = torch.from_numpy(arr) if arr.flags.writeable else torch.as_tensor(arr)
            tensors[name] = tensor if self._on_cpu else tensor.to(self.device)
        size = tensors[first_name].shape[0]
        mask_tensors = {name: self._check_mask(name, m, size, batched) for name, m in masks.items()}
        return tensors, mask_tensors, batched

    def _split(self, states: Any) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """Separate state values from ``<action>_mask`` entries, checking the keys.

        Returns ``(values, masks, from_list)``; a list of state dicts is stacked (batched).
        """
        specs = self.input_specs
        from_list = isinstance(states, list | tuple) and states and isinstance(states[0], Mapping)
        if from_list:
            states = {key: np.stack([s[key] for s in states]) for key in states[0]}
        if not isinstance(states, Mapping):
            if not specs.single:
                raise ConfigError(f"states: expected a dict with keys {specs.names()}")
            states = {"state": states}
        values: dict[str, Any] = {}
        masks: dict[str, Any] = {}
        for key, value in states.items():
            if key in specs:
                values[key] = value
            elif key in self._mask_names:
                masks[self._mask_names[key]] = value
            else:
                raise self._unexpected_key(key)
        missing = [name for name in specs if name not in values]
        if missing:
            raise ConfigError(f"states: missing {missing}; got keys {sorted(states)}")
        return values, masks, bool(from_list)

    def _unexpected_key(self, key: Any) -> ConfigError:
        base = str(key).removesuffix(MASK_SUFFIX)
        if str(key).endswith(MASK_SUFFIX) and base in self.action_specs:
            kind = self.action_specs[base].type
            return ConfigError(f"states.{key}: masks apply to int actions only; {base!r} is {kind}")
        valid = self.input_specs.names() + list(self._mask_names)
        return ConfigError(f"states: unexpected key {key!r}; valid keys: {valid}")

    def _check_mask(self, name: str, mask: Any, size: int, batched: bool) -> torch.Tensor:
        spec = self.action_specs[name]
        key = f"{'action' if self.action_specs.single else name}{MASK_SUFFIX}"
        arr = np.asarray(mask)
        if arr.dtype != np.bool_:
            if arr.dtype.kind not in "iu" or not np.isin(arr, (0, 1)).all():
                raise ConfigError(message(f"states.{key}", arr.dtype.name, "a boolean mask"))
            arr = arr.astype(bool)
        expected = (*spec.shape, spec.num_values)
        if not batched:
            arr = arr[None]
        if arr.shape != (size, *expected):
            raise ConfigError(
                f"states.{key}: shape {np.asarray(mask).shape} does not match action shape + "
                f"(num_values,) = {expected}" + (" with a batch axis" if batched else "")
            )
        if not arr.any(-1).all():
            rows = np.flatnonzero(~arr.any(-1).reshape(size, -1).all(-1)).tolist()
            where = f" in batch row(s) {rows}" if batched else ""
            raise ConfigError(f"states.{key}: a mask allows no value for action {name!r}{where}")
        return torch.as_tensor(arr).to(self.device)

    def _format_actions(self, actions: dict[str, np.ndarray], batched: bool) -> Any:
        """Mirror the input: unbatched scalar actions become Python ``int``/``float``/``bool``."""
        if not batched:
            actions = {name: a[0] if a.ndim > 1 else a[0].item() for name, a in actions.items()}
        if self.action_specs.single:
            return actions["action"]
        return actions


def reward_array(reward: Any, path: str = "observe.reward") -> np.ndarray:
    """``observe``'s reward (a number or one per slot) as a 1-D float32 array.

    Raises:
        ConfigError: the reward is not a number or an array of numbers.
    """
    try:
        rewards = np.atleast_1d(np.asarray(reward))
    except (TypeError, ValueError):  # ragged nested lists
        rewards = np.asarray(None)
    if rewards.dtype.kind not in "fiub":
        raise ConfigError(message(path, brief(reward), "a number or an array of numbers"))
    return rewards.astype(np.float32, copy=False)


def terminal_array(terminal: Any, path: str = "observe.terminal") -> np.ndarray:
    """``observe``'s terminal (one or one per slot) as a 1-D int64 array of 0, 1 or 2.

    Raises:
        ConfigError: a terminal is not 0/False, 1/True or 2 (strings, fractions, NaN...).
    """
    try:
        terminals = np.atleast_1d(np.asarray(terminal))
    except (TypeError, ValueError):  # ragged nested lists
        terminals = np.asarray(None)
    if terminals.dtype.kind == "f" and np.array_equal(terminals, np.round(terminals)):
        terminals = terminals.astype(np.int64)
    if terminals.dtype.kind not in "iub" or (
        terminals.size and terminals.astype(np.int64, copy=False).view(np.uint64).max() > 2
    ):  # negative ints wrap to huge unsigned values
        raise ConfigError(message(path, brief(terminal), "0, 1 or 2 (or bools), or one per slot"))
    return terminals.astype(np.int64, copy=False)


def check_finite_rewards(rewards: np.ndarray, slots: np.ndarray, timestep: int) -> None:
    """Refuse NaN or infinite rewards, naming the parallel slot and the agent timestep.

    Raises:
        ConfigError: a reward is NaN or infinite (or overflows float32).
    """
    finite = np.isfinite(rewards)
    if not np.logical_and.reduce(finite, axis=None):  # .all() adds a Python layer
        bad = np.flatnonzero(~finite)
        index = int(bad[0])
        raise ConfigError(
            message(
                f"observe.reward (parallel slot {int(slots[index])}, timestep {timestep})",
                float(rewards[index]),
                "a finite number",
                "A NaN or infinite reward would turn every weight into NaN",
            )
        )
