"""Environment base class and the wrapper that enforces time limits and checks outputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from forceexp.environments.compat import ParallelEpisodes, call_reset
from forceexp.errors import ConfigError, ProtocolError, brief, message
from forceexp.specs import Specs, check_array, parse_specs

TERMINATED, TRUNCATED = 1, 2


class Environment:
    """Interface every environment implements (Tensorforce-style).

    ``reset()`` returns states; ``execute(actions)`` returns ``(states, terminal, reward)`` where
    terminal is 0 (running), 1 (terminated: a true end) or 2 (truncated: e.g. a time limit, after
    which learners bootstrap from the value of the final state). States may carry mask entries
    ``<action>_mask`` beside the state components.
    """

    @staticmethod
    def create(environment: Any = None, **kwargs: Any) -> Environment:
        """Create an environment (see ``forceexp.environments.create`` for the arguments).

        Takes a Gymnasium id, ``'gym'`` + ``level``, an ``Environment`` class or instance, a
        ``gymnasium.Env``, a factory, or a config dict / file.
        """
        from forceexp.environments import create

        return create(environment, **kwargs)

    def states(self) -> dict[str, Any]:
        """State spec dict (one unnamed spec or a dict of named specs)."""
        raise NotImplementedError

    def actions(self) -> dict[str, Any]:
        """Action spec dict (one unnamed spec or a dict of named specs)."""
        raise NotImplementedError

    def max_episode_timesteps(self) -> int | None:
        """The environment's own episode length limit, if any."""
        return None

    def reward_threshold(self) -> float | None:
        """Return at which the task counts as solved (e.g. Gymnasium's ``reward_threshold``)."""
        return None

    def is_vectorizable(self) -> bool:
        """Whether ``reset(num_parallel=n)`` runs n episodes at once (Tensorforce's protocol)."""
        return False

    def num_actors(self) -> int:
        """Number of actors acting in one shared episode (Tensorforce's multi-actor protocol)."""
        return 1

    def reset(self, seed: int | None = None) -> Any:
        """Start an episode and return its first states.

        Tensorforce-style ``reset(self)`` without ``seed`` works too (the seed is not passed on).
        """
        raise NotImplementedError

    def execute(self, actions: Any) -> tuple[Any, int, float]:
        """Apply actions; return ``(states, terminal, reward)``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (windows, processes, sockets)."""


class EnvironmentWrapper(Environment):
    """Adds ``max_episode_timesteps`` (emitting terminal 2), call-order and output checks.

    Args:
        environment: The environment to wrap.
        max_episode_timesteps: Episode limit; defaults to the environment's own limit.
    """

    def __init__(self, environment: Environment, max_episode_timesteps: int | None = None) -> None:
        self.environment = environment
        own = environment.max_episode_timesteps()
        if max_episode_timesteps is not None and (
            not isinstance(max_episode_timesteps, int | np.integer) or max_episode_timesteps < 1
        ):
            raise ConfigError(
                f"max_episode_timesteps: {max_episode_timesteps!r} is invalid; expected an int >= 1"
            )
        self._limit = int(max_episode_timesteps) if max_episode_timesteps is not None else own
        self._state_specs = parse_specs(environment.states(), "state")
        self._action_specs = parse_specs(environment.actions(), "action")
        self._action_path = f"{environment!r} actions"  # made once: repr can be costly
        single = self._action_specs["action"] if self._action_specs.single else None
        #: values of a single scalar int action, checked without NumPy (the common case)
        self._scalar_values = (
            single.num_values
            if single is not None and single.type == "int" and not single.shape
            else None
        )
        self._timestep: int | None = None
        self._checked = False
        self._parallel: ParallelEpisodes | None = None

    def __repr__(self) -> str:
        return f"EnvironmentWrapper({self.environment!r}, max_episode_timesteps={self._limit})"

    def states(self) -> dict[str, Any]:
        """State spec dict of the wrapped environment."""
        return self._state_specs.to_dict()

    def actions(self) -> dict[str, Any]:
        """Action spec dict of the wrapped environment."""
        return self._action_specs.to_dict()

    @property
    def state_specs(self) -> Specs:
        """Parsed state specs."""
        return self._state_specs

    @property
    def action_specs(self) -> Specs:
        """Parsed action specs."""
        return self._action_specs

    def max_episode_timesteps(self) -> int | None:
        """Effective episode limit (the wrapper's, else the environment's own)."""
        return self._limit

    def reward_threshold(self) -> float | None:
        """The wrapped environment's solved threshold."""
        return self.environment.reward_threshold()

    def is_vectorizable(self) -> bool:
        """Whether the wrapped environment supports ``reset(num_parallel=n)``."""
        method = getattr(self.environment, "is_vectorizable", None)
        return bool(method()) if method is not None else False

    def num_actors(self) -> int:
        """Number of actors of the wrapped environment (1 unless it is multi-actor)."""
        method = getattr(self.environment, "num_actors", None)
        return int(method()) if method is not None else 1

    def reset(self, seed: int | None = None, num_parallel: int | None = None) -> Any:
        """Reset the wrapped environment and the episode timestep counter.

        Args:
            seed: Passed on when the environment's ``reset`` takes one.
            num_parallel: Vectorizable environments only: start that many episodes at once and
                return ``(parallel, states)``; ``execute`` then returns
                ``(parallel, states, terminal, reward)`` for the indices still running.
                A multi-actor environment (``num_actors() > 1``) always works this way, with
                one index per actor.
        """
        actors = self.num_actors()
        if num_parallel is not None or actors > 1:
            count = actors if actors > 1 else num_parallel
            self._parallel = ParallelEpisodes(self.environment, count, self._limit, actors > 1)
            self._timestep = None
            return self._parallel.reset()
        self._parallel = None
        self._timestep = 0
        states = call_reset(self.environment, seed)
        if not self._checked:
            self._check_states(states)
        return states

    def execute(self, actions: Any) -> tuple[Any, int, float]:
        """Step the wrapped environment; truncate with terminal 2 at the episode limit."""
        if self._parallel is not None:
            return self._parallel.execute(actions)  # type: ignore[return-value]
        if self._timestep is None:
            raise ProtocolError("execute() called before reset() (or after the episode ended)")
        self._check_actions(actions)
        states, terminal, reward = self.environment.execute(actions)
        terminal = int(terminal)
        if terminal not in (0, 1, 2):
            raise ConfigError(f"{self.environment!r}: terminal {terminal!r} is not 0, 1 or 2")
        self._timestep += 1
        if terminal == 0 and self._limit is not None and self._timestep >= self._limit:
            terminal = TRUNCATED
        if terminal:
            self._timestep = None
        if not self._checked:
            self._check_states(states)
            self._checked = True
        return states, terminal, float(reward)

    def close(self) -> None:
        """Close the wrapped environment."""
        self.environment.close()

    def _check_actions(self, actions: Any) -> None:
        """Refuse actions that do not match the action specs (before the environment sees them).

        Raises:
            ConfigError: ``<env> actions: <value> is invalid; expected ...`` (dtype, shape, NaN,
                range), or a dict lacking an action name.
        """
        if (
            self._scalar_values is not None
            and isinstance(actions, int | np.integer)
            and not isinstance(actions, bool)
            and 0 <= actions < self._scalar_values
        ):
            return
        specs, path = self._action_specs, self._action_path
        if specs.single and not isinstance(actions, dict):
            check_array(path, specs["action"], actions, 0)
            return
        if not isinstance(actions, dict) or any(name not in actions for name in specs):
            raise ConfigError(message(path, brief(actions), f"a dict with keys {specs.names()}"))
        for name in specs:
            check_array(f"{path}.{name}", specs[name], actions[name], 0)

    def _check_states(self, states: Any) -> None:
        specs = self._state_specs
        if specs.single and not isinstance(states, dict):
            check_array(f"{self.environment!r} states", specs["state"], states, 0)
            return
        if not isinstance(states, dict):
            raise ConfigError(
                f"{self.environment!r}: returned {type(states).__name__} states; "
                f"expected a dict with keys {specs.names()}"
            )
        for name in specs:
            key = name if name in states or not specs.single else "state"
            if key not in states:
                raise ConfigError(
                    f"{self.environment!r}: states lack {name!r} (got keys {sorted(states)})"
                )
            check_array(f"{self.environment!r} states.{name}", specs[name], states[key], 0)
