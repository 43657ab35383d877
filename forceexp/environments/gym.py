"""Gymnasium adapter: spaces to specs, terminated (1) vs truncated (2), seeding."""

from __future__ import annotations

from typing import Any

import numpy as np

from forceexp.environments.environment import TERMINATED, TRUNCATED, Environment
from forceexp.errors import ConfigError
from forceexp.specs import spec_from_space


class GymEnvironment(Environment):
    """Wraps a Gymnasium environment (by id or instance).

    Args:
        level: A Gymnasium id such as ``'CartPole-v1'``, or a ``gymnasium.Env`` instance.
        max_episode_timesteps: Passed to ``gymnasium.make`` as ``max_episode_steps``.
        **kwargs: Extra ``gymnasium.make`` keyword arguments (e.g. ``render_mode``).
    """

    def __init__(self, level: Any, max_episode_timesteps: int | None = None, **kwargs: Any) -> None:
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
        self._states = spec_from_space(self.env.observation_space, "state")
        self._actions = spec_from_space(self.env.action_space, "action")
        self._float_obs = self._states.get("type") == "float"
        spec = getattr(self.env, "spec", None)
        self._limit = getattr(spec, "max_episode_steps", None) if spec else None

    def __repr__(self) -> str:
        return f"GymEnvironment({self.level!r})"

    def states(self) -> dict[str, Any]:
        """State spec derived from the observation space."""
        return self._states

    def actions(self) -> dict[str, Any]:
        """Action spec derived from the action space."""
        return self._actions

    def max_episode_timesteps(self) -> int | None:
        """The Gymnasium TimeLimit, if registered."""
        return self._limit

    def reset(self, seed: int | None = None) -> Any:
        """Reset (seeding the env on the first call when ``seed`` is given)."""
        obs, _ = self.env.reset(seed=seed)
        return self._observation(obs)

    def execute(self, actions: Any) -> tuple[Any, int, float]:
        """Step once; terminated -> 1, truncated -> 2."""
        if isinstance(actions, np.ndarray) and actions.ndim == 0:
            actions = actions.item()
        obs, reward, terminated, truncated, _ = self.env.step(actions)
        terminal = TERMINATED if terminated else TRUNCATED if truncated else 0
        return self._observation(obs), terminal, float(reward)

    def _observation(self, obs: Any) -> Any:
        if self._float_obs and isinstance(obs, np.ndarray) and obs.dtype != np.float32:
            return obs.astype(np.float32)
        return obs

    def close(self) -> None:
        """Close the Gymnasium environment."""
        self.env.close()
