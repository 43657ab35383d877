"""Gymnasium vector environments (``gymnasium.make_vec``, ``SyncVectorEnv``, ...) as one kind.

``GymVectorEnvironment`` adapts any ``gymnasium.vector.VectorEnv`` to the project's
``VectorizedEnvironment`` interface, so the vectorised runner loop steps it with one ``act``,
one ``step`` and one ``observe`` per step. Gymnasium resets finished sub-environments itself;
the adapter turns that back into "true next states now, ``reset_where`` later":

* ``SAME_STEP``: the step that ends an episode already returns the reset observation; the
  adapter returns the true final observation (``infos['final_obs']``) in its place, so
  truncated episodes bootstrap from it, and hands out the reset observation on ``reset_where``.
* ``NEXT_STEP`` (Gymnasium's default): the step that ends an episode returns the true final
  observation; Gymnasium resets on the following step and ignores its action. Vector envs that
  reset single rows (``SyncVectorEnv``, ``AsyncVectorEnv``: ``options={'reset_mask': ...}``) are
  reset at once in ``reset_where``. Others (e.g. ``CartPoleVectorEnv`` from
  ``vectorization_mode='vector_entry_point'``) mark those rows ``pending``: their next step is
  Gymnasium's reset step, for which the runner neither acts nor stores a transition.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forceexp.environments.environment import TERMINATED, TRUNCATED
from forceexp.environments.gym import MASK_KEY, mask_entries
from forceexp.environments.spaces import SpaceMap, _Node
from forceexp.environments.vectorized import VectorizedEnvironment
from forceexp.errors import ConfigError, ProtocolError, message


def _has_split(node: _Node) -> bool:
    return node.kind == "split" or any(_has_split(child) for _, child in node.children)


def _to_gym(node: _Node, value: Any) -> Any:
    """Batched forceexp actions -> a batched Gymnasium action (leaf, Dict or Tuple)."""
    if node.kind == "leaf":
        arr = np.asarray(value)
        if node.spec["type"] == "int":
            arr = arr.astype(np.int64) + node.offset
        return arr.astype(node.space.dtype, copy=False)
    parts = [
        (key, _to_gym(child, value if child.kind != "leaf" else value[child.name]))
        for key, child in node.children
    ]
    return dict(parts) if node.kind == "dict" else tuple(part for _, part in parts)


class GymVectorEnvironment(VectorizedEnvironment):
    """A ``gymnasium.vector.VectorEnv`` as a ``VectorizedEnvironment`` (see the module docstring).

    Observations and actions map as for ``GymEnvironment`` (Box, Discrete, MultiBinary,
    equal-size MultiDiscrete, Dict and Tuple of them), with a leading ``(N,)`` axis. Action
    masks (an ``action_mask`` entry of a Dict observation or of ``infos``) become
    ``<action>_mask`` state entries.

    Args:
        environment: The Gymnasium vector environment (closed by ``close``), or a Gymnasium id
            made with ``gymnasium.make_vec(id, num_environments, **kwargs)``.
        max_episode_timesteps: Episode limit applied on top of Gymnasium's own (only for vector
            envs that reset single rows; others take ``max_episode_steps`` in ``make_vec``).
        num_environments: With an id: the number of sub-environments.
        **kwargs: With an id: passed to ``gymnasium.make_vec`` (``vectorization_mode``,
            ``vector_kwargs``, ...).
    """

    def __init__(
        self,
        environment: Any,
        max_episode_timesteps: int | None = None,
        num_environments: int = 1,
        **kwargs: Any,
    ) -> None:
        import gymnasium
        from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

        if isinstance(environment, str):
            environment = _make_vec(environment, num_environments, max_episode_timesteps, kwargs)
            max_episode_timesteps = None
        if not isinstance(environment, gymnasium.vector.VectorEnv):
            expected = "a gymnasium.vector.VectorEnv"
            raise ConfigError(message("environment", type(environment).__name__, expected))
        mode = environment.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self.same_step = AutoresetMode(mode) == AutoresetMode.SAME_STEP
        if AutoresetMode(mode) == AutoresetMode.DISABLED:
            raise ConfigError(
                message(
                    "environment.metadata['autoreset_mode']",
                    str(mode),
                    "NEXT_STEP or SAME_STEP (the runner steps finished sub-environments on)",
                )
            )
        self.environment = environment
        self.masked_reset = isinstance(environment.unwrapped, SyncVectorEnv | AsyncVectorEnv)
        self.action_map = SpaceMap(environment.single_action_space, "action")
        self._mask_keys = self._observed_mask_keys(environment.single_observation_space)
        self.state_map = SpaceMap(environment.single_observation_space, "state", self._mask_keys)
        for name, space_map in (("action", self.action_map), ("observation", self.state_map)):
            if _has_split(space_map.root):
                raise ConfigError(
                    f"environment: the {name} space has a MultiDiscrete of unequal sizes, which "
                    "vector environments do not support; wrap the single environment instead"
                )
        spec = getattr(environment, "spec", None)
        limit = getattr(spec, "max_episode_steps", None) if spec else None
        self._gym_limit = limit or getattr(environment.unwrapped, "max_episode_steps", None)
        self.pending: np.ndarray | None = None
        super().__init__(environment.num_envs, max_episode_timesteps)
        self._fresh = np.zeros(self.num_environments, dtype=bool)  # current obs starts an episode
        self._autoreset = np.zeros(self.num_environments, dtype=bool)  # Gymnasium resets next
        self._current: Any = None  # Gymnasium's latest observations, as states

    def __repr__(self) -> str:
        name = getattr(getattr(self.environment, "spec", None), "id", None)
        name = name or type(self.environment.unwrapped).__name__
        return f"GymVectorEnvironment({name!r}, num_environments={self.num_environments})"

    def _observed_mask_keys(self, space: Any) -> tuple[str, ...]:
        from gymnasium import spaces

        if not isinstance(space, spaces.Dict):
            return ()
        names = {
            f"{name}_mask"
            for name in SpaceMap(self.environment.single_action_space, "action").leaves
        } | {MASK_KEY}
        return tuple(key for key in space if key in names)

    def states(self) -> dict[str, Any]:
        """State spec of one sub-environment (from ``single_observation_space``)."""
        return self.state_map.specs()

    def actions(self) -> dict[str, Any]:
        """Action spec of one sub-environment (from ``single_action_space``)."""
        return self.action_map.specs()

    def max_episode_timesteps(self) -> int | None:
        """The limit given here, else Gymnasium's own (``max_episode_steps``)."""
        return self._limit if self._limit is not None else self._gym_limit

    def reward_threshold(self) -> float | None:
        """The registered ``reward_threshold`` (CartPole-v1: 475), if any."""
        threshold = getattr(getattr(self.environment, "spec", None), "reward_threshold", None)
        return None if threshold is None else float(threshold)

    def set_max_episode_timesteps(self, max_episode_timesteps: int | None) -> None:
        """Set an own episode limit (vector envs that reset single rows only)."""
        if max_episode_timesteps is not None and not self.masked_reset:
            if max_episode_timesteps != self._gym_limit:
                raise ConfigError(
                    message(
                        "max_episode_timesteps",
                        max_episode_timesteps,
                        f"{self._gym_limit}",
                        f"{self!r} cannot reset single sub-environments; give "
                        "gymnasium.make_vec(..., max_episode_steps=...) instead",
                    )
                )
            max_episode_timesteps = None  # Gymnasium applies it
        super().set_max_episode_timesteps(max_episode_timesteps)

    def reset(self, seed: int | None = None) -> Any:
        """Reset every sub-environment (``seed`` seeds Gymnasium's vector env)."""
        obs, info = self.environment.reset(seed=seed)
        self._timesteps[:] = 0
        self._started, self.pending = True, None
        self._fresh[:], self._autoreset[:] = True, False
        self._current = self._states(obs, info)
        return self._current

    def reset_where(self, done: np.ndarray) -> Any:
        """Start new episodes where ``done``; rows still ``pending`` get theirs on the next step."""
        done = np.asarray(done)
        super().reset_where(done)  # checks, and zeroes the step counters
        need = done & ~self._fresh
        if need.all():  # every row: one plain reset works for every vector env
            return self.reset()
        if self.masked_reset and need.any():
            obs, info = self.environment.reset(options={"reset_mask": need})
            self._current = self._states(obs, info, self._current)
            self._fresh |= need
            self._autoreset &= ~need
            return self._current
        stuck = need & ~self._autoreset
        if stuck.any():
            raise ProtocolError(
                f"{self!r}: sub-environments {np.flatnonzero(stuck).tolist()} cannot be reset "
                "alone (they did not just finish); reset all at once or use a SyncVectorEnv"
            )
        if need.any():
            self.pending = need if self.pending is None else self.pending | need
        return self._current

    def _reset(self, rows: np.ndarray) -> Any:
        return self._current  # reset_where does the work; the base class only checks

    def execute(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        """Step all sub-environments; finished rows return their true final states.

        Returns:
            ``(next_states (N, ...), terminals (N,) int64 0/1/2, rewards (N,) float32)``;
            rows that were ``pending`` return their first states (reward and terminal 0).
        """
        if not self._started:
            raise ProtocolError("execute() called before reset()")
        if self._action_spec is not None:
            actions = self._check_actions(actions)
        step = self.environment.step(_to_gym(self.action_map.root, actions))
        obs, rewards, terminated, truncated, info = step
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        self._timesteps += 1
        finished = terminated | truncated
        self._current = self._states(obs, info, self._current)
        states = self._current
        if self.same_step and finished.any():
            states = self._final_states(finished, info)
        self._fresh = finished if self.same_step else np.zeros_like(finished)
        if self.pending is not None:
            self._timesteps[self.pending] = 0
            self._fresh |= self.pending
            self.pending = None
        self._autoreset = np.zeros_like(finished) if self.same_step else finished
        terminals = np.where(terminated, TERMINATED, np.where(truncated, TRUNCATED, 0))
        if self._limit is not None:
            late = (terminals == 0) & (self._timesteps >= self._limit)
            terminals[late] = TRUNCATED
        return states, terminals.astype(np.int64), np.asarray(rewards, dtype=np.float32)

    def _final_states(self, finished: np.ndarray, info: dict[str, Any]) -> Any:
        """The step's states with the true final observations in the ``finished`` rows."""
        from gymnasium.vector.utils import concatenate, create_empty_array

        rows = np.flatnonzero(finished)
        space = self.environment.single_observation_space
        final = info["final_obs"]
        batch = concatenate(space, [final[i] for i in rows], create_empty_array(space, len(rows)))
        final_info = info.get("final_info", {})
        part = self._states(batch, _take_info(final_info, rows))
        full = self._current
        if isinstance(full, dict):
            return {key: _put(value, rows, part.get(key)) for key, value in full.items()}
        return _put(full, rows, part)

    def _states(self, obs: Any, info: Any, previous: Any = None) -> Any:
        """Gymnasium's batched observations (and ``infos`` masks) as batched states."""
        has_info_mask = isinstance(info, dict) and MASK_KEY in info
        if not self._mask_keys and not has_info_mask:
            return self.state_map.flatten(obs)
        masks: dict[str, np.ndarray] = {}
        if self._mask_keys:
            for key in self._mask_keys:
                masks.update(mask_entries(self.action_map, key, obs[key]))
            obs = {key: value for key, value in obs.items() if key not in self._mask_keys}
        if has_info_mask:
            present = np.asarray(info.get(f"_{MASK_KEY}", np.ones(self.num_environments, bool)))
            for key, mask in self.action_map.masks(info[MASK_KEY]).items():
                old = previous.get(key) if isinstance(previous, dict) else None
                masks[key] = (
                    mask
                    if old is None or present.all()
                    else np.where(present.reshape((-1,) + (1,) * (mask.ndim - 1)), mask, old)
                )
        states = self.state_map.flatten(obs)
        if self.state_map.single:
            states = {"state": states}
        return {**states, **masks}

    def close(self) -> None:
        """Close the Gymnasium vector environment."""
        self.environment.close()


def _make_vec(level: str, count: int, limit: int | None, kwargs: dict[str, Any]) -> Any:
    import gymnasium

    if limit is not None:
        kwargs = {"max_episode_steps": limit, **kwargs}
    try:
        return gymnasium.make_vec(level, num_envs=count, **kwargs)
    except (gymnasium.error.Error, TypeError, ValueError) as exc:
        raise ConfigError(f"environment: cannot make_vec Gymnasium env {level!r} ({exc})") from exc


def _take_info(info: Any, rows: np.ndarray) -> Any:
    """The ``rows`` of a batched ``infos`` dict (only the action-mask entries matter)."""
    if not isinstance(info, dict) or MASK_KEY not in info:
        return {}
    mask = np.asarray(info[MASK_KEY])[rows]
    return {MASK_KEY: mask, f"_{MASK_KEY}": np.asarray(info[f"_{MASK_KEY}"])[rows]}


def _put(full: np.ndarray, rows: np.ndarray, part: Any) -> np.ndarray:
    if part is None:
        return full
    out = full.copy()
    out[rows] = part
    return out
