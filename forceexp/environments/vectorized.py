"""Vectorised environments: N sub-environments stepped together with NumPy, no Python loop."""

from __future__ import annotations

from typing import Any

import numpy as np

from forceexp.environments.environment import TERMINATED, TRUNCATED
from forceexp.errors import ConfigError, ProtocolError, message
from forceexp.specs import parse_specs


class VectorizedEnvironment:
    """N copies of one environment in a single object, all arrays with a leading ``(N,)`` axis.

    Unlike ``Environment``, ``execute`` does not reset finished sub-environments: it returns the
    true next states (learners bootstrap from them on truncation) and the caller resets the
    finished ones with ``reset_where``. Sub-environments that ended and are stepped again
    without a reset produce meaningless outputs. Episode limits are applied here, vectorised:
    a sub-environment reaching ``max_episode_timesteps`` steps without terminating reports
    terminal 2.

    Subclasses implement ``states``, ``actions``, ``_reset(rows)``, ``_execute(actions)``, and
    set ``default_max_episode_timesteps``. Environments that can only reset on their next step
    (Gymnasium's NEXT_STEP autoreset) set ``pending`` in ``reset_where``. Randomness comes from
    ``self.rng`` (``np.random.Generator``), re-seeded by ``reset(seed=...)``.

    Args:
        num_environments: Number of sub-environments N.
        max_episode_timesteps: Episode limit (default: the environment's own,
            ``default_max_episode_timesteps``); None and no own limit: episodes end only when
            they terminate.
    """

    solved_return: float | None = None  # Gymnasium's reward_threshold, where it has one

    default_max_episode_timesteps: int | None = None

    # rows (bool (N,)) whose next ``execute`` only starts the episode ``reset_where`` asked for:
    # their action is ignored and they return their first states; None: no such rows
    pending: np.ndarray | None = None

    def __init__(self, num_environments: int = 1, max_episode_timesteps: int | None = None) -> None:
        if not isinstance(num_environments, int | np.integer) or num_environments < 1:
            raise ConfigError(message("num_environments", num_environments, "an int >= 1"))
        self.num_environments = int(num_environments)
        self._limit = self.default_max_episode_timesteps
        if max_episode_timesteps is not None:
            self.set_max_episode_timesteps(max_episode_timesteps)
        self._timesteps = np.zeros(self.num_environments, dtype=np.int64)
        self._started = False
        self.rng = np.random.default_rng()
        specs = parse_specs(self.actions(), "action")
        self._action_spec = specs["action"] if specs.single else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_environments={self.num_environments})"

    def states(self) -> dict[str, Any]:
        """State spec of one sub-environment (as for ``Environment.states``)."""
        raise NotImplementedError

    def actions(self) -> dict[str, Any]:
        """Action spec of one sub-environment (as for ``Environment.actions``)."""
        raise NotImplementedError

    def max_episode_timesteps(self) -> int | None:
        """Effective episode limit of every sub-environment."""
        return self._limit

    def reward_threshold(self) -> float | None:
        """Return at which the task counts as solved (class attribute ``solved_return``)."""
        return self.solved_return

    def set_max_episode_timesteps(self, max_episode_timesteps: int | None) -> None:
        """Change the episode limit (None: the environment's own)."""
        if max_episode_timesteps is None:
            self._limit = self.default_max_episode_timesteps
            return
        if not isinstance(max_episode_timesteps, int | np.integer) or max_episode_timesteps < 1:
            raise ConfigError(
                message("max_episode_timesteps", max_episode_timesteps, "an int >= 1")
            )
        self._limit = int(max_episode_timesteps)

    def reset(self, seed: int | None = None) -> Any:
        """Start an episode in every sub-environment; return the batched first states.

        Args:
            seed: Re-seeds ``self.rng`` (all N initial states then follow from it).
        """
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._timesteps[:] = 0
        self._started = True
        return self._reset(np.arange(self.num_environments))

    def reset_where(self, done: np.ndarray) -> Any:
        """Start new episodes where ``done`` (bool ``(N,)``) is set; return all N states."""
        done = np.asarray(done)
        if done.shape != (self.num_environments,) or done.dtype != np.bool_:
            raise ConfigError(
                f"reset_where: done has dtype {done.dtype} and shape {done.shape}; "
                f"expected bool ({self.num_environments},)"
            )
        if not self._started:
            raise ProtocolError("reset_where() called before reset()")
        rows = np.flatnonzero(done)
        self._timesteps[rows] = 0
        return self._reset(rows)

    def execute(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        """Step every sub-environment once (no automatic reset).

        Args:
            actions: Batched actions, ``(N, ...)`` (or a dict of them for named actions).

        Returns:
            ``(next_states (N, ...), terminals (N,) int64 0/1/2, rewards (N,) float32)``.
        """
        if not self._started:
            raise ProtocolError("execute() called before reset()")
        if self._action_spec is not None:
            actions = self._check_actions(actions)
        states, terminated, rewards = self._execute(actions)
        self._timesteps += 1
        if self._limit is None:
            return states, terminated.astype(np.int64), rewards
        truncated = (self._timesteps >= self._limit) * TRUNCATED
        return states, np.where(terminated, TERMINATED, truncated), rewards

    def close(self) -> None:
        """Release resources (nothing by default)."""

    def _check_actions(self, actions: Any) -> np.ndarray:
        """Check a single unnamed action's batch shape and (for int actions) value range."""
        spec = self._action_spec
        actions = np.asarray(actions)
        expected = (self.num_environments, *spec.shape)
        if actions.shape != expected:
            raise ConfigError(
                f"{self!r}.execute: actions have shape {actions.shape}; expected {expected}"
            )
        if spec.num_values is not None and (actions.min() < 0 or actions.max() >= spec.num_values):
            raise ConfigError(
                f"{self!r}.execute: actions must lie in [0, {spec.num_values}); "
                f"got min {actions.min()}, max {actions.max()}"
            )
        return actions

    def _reset(self, rows: np.ndarray) -> Any:
        """Draw initial states for the sub-environments ``rows`` (sorted indices); return all N."""
        raise NotImplementedError

    def _execute(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        """Step all N; return ``(states, terminated bool (N,), rewards float32 (N,))``."""
        raise NotImplementedError


def refuse_remote(environment: Any) -> None:
    """Raise if ``environment`` is vectorised (worker processes and servers step one at a time)."""
    if isinstance(environment, VectorizedEnvironment):
        raise ConfigError(
            f"environment: {environment!r} is vectorised and runs only in the runner's process; "
            "use Runner(environment=...) without remote="
        )
