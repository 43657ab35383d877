"""Gymnasium adapter: spaces to specs and back, action masks, terminated (1) vs truncated (2)."""

from __future__ import annotations

from typing import Any

import numpy as np

from forceexp.environments.environment import TERMINATED, TRUNCATED, Environment
from forceexp.environments.spaces import SpaceMap
from forceexp.errors import ConfigError, message

MASK_KEY = "action_mask"


def mask_entries(action_map: SpaceMap, key: str, mask: Any) -> dict[str, np.ndarray]:
    """``<action>_mask`` state entries from Gymnasium's ``action_mask`` or ``<name>_mask``."""
    if key == MASK_KEY:
        return action_map.masks(mask)
    return {key: action_map.masks({key[: -len("_mask")]: mask})[key]}


UNBOUNDED = 1e6  # |bounds| from here on count as infinite (as Tensorforce's OpenAIGym)


def bound_space(space: Any, min_value: float, max_value: float) -> Any:
    """A copy of ``space`` whose infinite float ``Box`` bounds are ``min_value``/``max_value``.

    Finite bounds are kept; ``Dict`` and ``Tuple`` spaces are bounded entry by entry.
    """
    from gymnasium import spaces

    if isinstance(space, spaces.Box) and np.issubdtype(space.dtype, np.floating):
        low = np.where(space.low <= -UNBOUNDED, min_value, space.low).astype(space.dtype)
        high = np.where(space.high >= UNBOUNDED, max_value, space.high).astype(space.dtype)
        return spaces.Box(low, high, space.shape, space.dtype)
    if isinstance(space, spaces.Dict):
        return spaces.Dict(
            {key: bound_space(sub, min_value, max_value) for key, sub in space.items()}
        )
    if isinstance(space, spaces.Tuple):
        return spaces.Tuple([bound_space(sub, min_value, max_value) for sub in space])
    return space


def clip_to(space: Any, value: Any) -> Any:
    """``value`` clipped into the float ``Box`` bounds of ``space`` (other entries as they are)."""
    from gymnasium import spaces

    if isinstance(space, spaces.Box) and np.issubdtype(space.dtype, np.floating):
        return np.clip(value, space.low, space.high)
    if isinstance(space, spaces.Dict):
        return {
            key: clip_to(space[key], v) if key in space.spaces else v for key, v in value.items()
        }
    if isinstance(space, spaces.Tuple):
        return tuple(clip_to(sub, v) for sub, v in zip(space, value, strict=True))
    return value


def bounded(env: Any, min_value: float | None, max_value: float | None) -> Any:
    """``env`` with infinite observation bounds replaced and observations clipped to them.

    Tensorforce's ``OpenAIGym(min_value=..., max_value=...)``: give both or neither.

    Raises:
        ConfigError: Only one of the two is given, or ``min_value >= max_value``.
    """
    if min_value is None and max_value is None:
        return env
    if min_value is None or max_value is None or not min_value < max_value:
        raise ConfigError(
            message(
                "environment.min_value/max_value",
                (min_value, max_value),
                "both numbers with min_value < max_value (or neither)",
            )
        )
    from gymnasium.wrappers import TransformObservation

    space = bound_space(env.observation_space, float(min_value), float(max_value))
    return TransformObservation(env, lambda obs: clip_to(space, obs), space)


class GymEnvironment(Environment):
    """Wraps a Gymnasium environment (by id or instance).

    Observations and actions are flattened into named specs and mapped back (see
    ``forceexp.environments.spaces``). Gymnasium's action-mask convention is picked up: an
    ``action_mask`` entry of a ``Dict`` observation (or ``<action>_mask`` entries) or of the
    ``info`` dict of ``reset``/``step`` is passed on as ``<action>_mask`` state entries (bool).

    Args:
        level: A Gymnasium id such as ``'CartPole-v1'``, or a ``gymnasium.Env`` instance.
        max_episode_timesteps: Passed to ``gymnasium.make`` as ``max_episode_steps``.
        min_value: With ``max_value``: infinite bounds of float ``Box`` observations become
            these, and observations are clipped into the bounds (Tensorforce's ``OpenAIGym``
            arguments; bounds beyond +-1e6 count as infinite).
        max_value: See ``min_value``.
        **kwargs: Extra ``gymnasium.make`` keyword arguments (e.g. ``render_mode``).
    """

    def __init__(
        self,
        level: Any,
        max_episode_timesteps: int | None = None,
        min_value: float | None = None,
        max_value: float | None = None,
        **kwargs: Any,
    ) -> None:
        import gymnasium

        if isinstance(level, gymnasium.Env):
            self.env = level
        else:
            try:
                self.env = gymnasium.make(
                    level,
                    max_episode_steps=max_episode_timesteps,
                    disable_env_checker=True,
                    **kwargs,
                )
            except gymnasium.error.Error as exc:
                raise ConfigError(
                    f"environment: cannot make Gymnasium env {level!r} ({exc})"
                ) from exc
        self.level = level if isinstance(level, str) else type(self.env.unwrapped).__name__
        self.env = bounded(self.env, min_value, max_value)
        self.action_map = SpaceMap(self.env.action_space, "action")
        self._mask_keys = self._observed_mask_keys()
        self.state_map = SpaceMap(self.env.observation_space, "state", self._mask_keys)
        self._states = self.state_map.specs()
        self._actions = self.action_map.specs()
        spec = getattr(self.env, "spec", None)
        self._limit = getattr(spec, "max_episode_steps", None) if spec else None

    def __repr__(self) -> str:
        return f"GymEnvironment({self.level!r})"

    def _observed_mask_keys(self) -> tuple[str, ...]:
        """Top-level keys of a Dict observation space that carry action masks."""
        from gymnasium import spaces

        space = self.env.observation_space
        if not isinstance(space, spaces.Dict):
            return ()
        names = {f"{name}_mask" for name in self.action_map.leaves} | {MASK_KEY}
        return tuple(key for key in space if key in names)

    def states(self) -> dict[str, Any]:
        """State spec derived from the observation space."""
        return self._states

    def actions(self) -> dict[str, Any]:
        """Action spec derived from the action space."""
        return self._actions

    def max_episode_timesteps(self) -> int | None:
        """The Gymnasium TimeLimit, if registered."""
        return self._limit

    def reward_threshold(self) -> float | None:
        """The registered ``reward_threshold`` (CartPole-v1: 475), if any."""
        spec = getattr(self.env, "spec", None)
        threshold = getattr(spec, "reward_threshold", None)
        return None if threshold is None else float(threshold)

    def reset(self, seed: int | None = None) -> Any:
        """Reset (seeding the env on the first call when ``seed`` is given)."""
        obs, info = self.env.reset(seed=seed)
        return self._observation(obs, info)

    def execute(self, actions: Any) -> tuple[Any, int, float]:
        """Map actions back onto the action space and step once; terminated 1, truncated 2."""
        obs, reward, terminated, truncated, info = self.env.step(self.action_map.unflatten(actions))
        terminal = TERMINATED if terminated else TRUNCATED if truncated else 0
        return self._observation(obs, info), terminal, float(reward)

    def _observation(self, obs: Any, info: Any) -> Any:
        if not self._mask_keys and (not isinstance(info, dict) or MASK_KEY not in info):
            return self.state_map.flatten(obs)  # the common case: no action masks
        masks: dict[str, np.ndarray] = {}
        if self._mask_keys:
            for key in self._mask_keys:
                masks.update(mask_entries(self.action_map, key, obs[key]))
            obs = {key: value for key, value in obs.items() if key not in self._mask_keys}
        if isinstance(info, dict) and MASK_KEY in info:
            masks.update(mask_entries(self.action_map, MASK_KEY, info[MASK_KEY]))
        states = self.state_map.flatten(obs)
        if not masks:
            return states
        if self.state_map.single:
            states = {"state": states}
        return {**states, **masks}

    def close(self) -> None:
        """Close the Gymnasium environment."""
        self.env.close()
