"""Tensorforce's vectorizable and multi-actor environments as slots a runner steps as one batch.

A Tensorforce-style vectorizable environment (``is_vectorizable()`` true; ``reset(num_parallel=n)``
returns ``(parallel, states)``, ``execute(actions)`` returns ``(parallel, states, terminal,
reward)`` for the indices still running) or multi-actor environment (``num_actors() > 1``; the
same protocol from a plain ``reset()``) is presented as a ``VectorizedEnvironment`` of N slots,
so ``Runner`` drives it with its vectorised loop. Its episodes can only restart together, so the
runner runs it with ``sync_episodes``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forceexp.environments.environment import EnvironmentWrapper
from forceexp.environments.vectorized import VectorizedEnvironment
from forceexp.errors import ConfigError, ProtocolError


class ParallelSlots(VectorizedEnvironment):
    """N slots over one wrapped vectorizable (or multi-actor) environment.

    Rows of the batched arrays are slots. After a (re)start of ``k`` slots, the environment's
    index ``j`` is the ``j``-th of them. ``execute`` takes actions for all N slots and returns
    states, terminals and rewards for all N; slots that are not running repeat their last
    states with terminal 0 and reward 0 (the runner does not look at them). The episode limit
    is applied per slot by the wrapper (terminal 2).

    Args:
        environment: The wrapped environment (``max_episode_timesteps`` already set on it).
        num_parallel: Slots N (a multi-actor environment: its ``num_actors()``).
    """

    def __init__(self, environment: EnvironmentWrapper, num_parallel: int) -> None:
        self.environment = environment
        self.actors = environment.num_actors() > 1
        super().__init__(num_parallel)  # no limit here: the wrapper applies it per slot
        self._index_row = np.arange(self.num_environments)  # environment index -> slot
        self._visible = np.empty(0, dtype=np.int64)  # slots whose actions execute takes
        self._states: Any = None

    def __repr__(self) -> str:
        return f"ParallelSlots({self.environment!r}, num_parallel={self.num_environments})"

    def states(self) -> dict[str, Any]:
        """State spec of one slot."""
        return self.environment.states()

    def actions(self) -> dict[str, Any]:
        """Action spec of one slot."""
        return self.environment.actions()

    def max_episode_timesteps(self) -> int | None:
        """The wrapper's episode limit (applied per slot)."""
        return self.environment.max_episode_timesteps()

    def reward_threshold(self) -> float | None:
        """The wrapped environment's solved threshold."""
        return self.environment.reward_threshold()

    def _reset(self, rows: np.ndarray) -> Any:
        """Start episodes in slots ``rows`` (a multi-actor environment: in all of them)."""
        if self.actors:
            rows = np.arange(self.num_environments)
            parallel, states = self.environment.reset()
        else:
            parallel, states = self.environment.reset(num_parallel=len(rows))
        self._index_row = rows
        return self._take_states(np.asarray(parallel, dtype=np.int64), states)

    def execute(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        """Step the running slots; ``(states (N, ...), terminals (N,), rewards (N,))``."""
        from forceexp.execution.vectorized import take

        if not self._started:
            raise ProtocolError("execute() called before reset()")
        rows = self._visible
        if self._action_spec is not None:
            actions = self._check_actions(actions)
        parallel, states, terminal, reward = self.environment.execute(take(actions, rows))
        terminals = np.zeros(self.num_environments, dtype=np.int64)
        rewards = np.zeros(self.num_environments, dtype=np.float32)
        terminals[rows] = terminal
        rewards[rows] = reward
        return self._take_states(np.asarray(parallel, dtype=np.int64), states), terminals, rewards

    def _take_states(self, parallel: np.ndarray, states: Any) -> Any:
        """Put the states of the running environment indices ``parallel`` into their slots."""
        from forceexp.execution.vectorized import put

        self._visible = self._index_row[parallel]
        if len(parallel):
            if isinstance(states, dict):
                batched = {key: np.asarray(value) for key, value in states.items()}
            else:
                batched = np.asarray(states)
            self._states = put(self._states, self._visible, batched, self.num_environments)
        return self._states

    def close(self) -> None:
        """Close the wrapped environment."""
        self.environment.close()


def as_slots(environment: Any, count: int) -> ParallelSlots | None:
    """``environment`` as ``count`` slots if it is multi-actor, or vectorizable and ``count > 1``.

    Raises:
        ConfigError: A multi-actor environment given ``num_parallel > 1`` (its actors are the
            slots).
    """
    if not isinstance(environment, EnvironmentWrapper):
        return None
    actors = environment.num_actors()
    if actors > 1:
        if count > 1:
            raise ConfigError(
                f"num_parallel: {count} is invalid for the multi-actor {environment!r}; its "
                f"{actors} actors are the parallel slots (leave num_parallel unset)"
            )
        return ParallelSlots(environment, actors)
    if count > 1 and environment.is_vectorizable():
        return ParallelSlots(environment, count)
    return None
