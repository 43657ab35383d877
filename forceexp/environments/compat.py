"""Tensorforce-interface compatibility: legacy ``reset()``, import paths and vectorizable envs.

Environments written to Tensorforce's interface run unchanged: ``reset(self)`` without a
``seed`` argument, an environment named by an importable ``'package.module.Class'`` path, a
``gymnasium.Env`` class, and the vectorizable protocol (``is_vectorizable()`` true,
``reset(num_parallel=n)`` returning ``(parallel, states)`` and ``execute(actions)`` returning
``(parallel, states, terminal, reward)`` for the sub-environments still running).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from functools import cache
from typing import Any

import numpy as np

from forceexp.errors import ConfigError, ProtocolError, message

log = logging.getLogger(__name__)

TRUNCATED = 2


@cache
def _reset_takes_seed(cls: type) -> bool:
    """Whether ``cls.reset`` accepts a ``seed`` keyword (Tensorforce's ``reset(self)`` does not)."""
    try:
        parameters = inspect.signature(cls.reset).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "seed" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def call_reset(environment: Any, seed: int | None) -> Any:
    """``environment.reset(seed=seed)``, or ``reset()`` for Tensorforce-style environments.

    A Tensorforce-style environment seeds itself (usually through NumPy's global generator,
    which ``Agent(seed=...)`` seeds); a given ``seed`` is then not passed on.
    """
    if _reset_takes_seed(type(environment)):
        return environment.reset(seed=seed)
    if seed is not None:
        log.debug("%r.reset takes no seed; seed %s not passed on", environment, seed)
    return environment.reset()


def import_environment(path: str) -> Any:
    """Import ``'package.module.Class'`` (or ``'package.module:Class'``); None if not a path.

    Only environment classes are accepted: an ``Environment`` or ``VectorizedEnvironment``
    subclass, or a ``gymnasium.Env`` subclass. A module path (``'package.module'``) names the
    one environment class in that module, as in Tensorforce.

    Raises:
        ConfigError: The module cannot be imported, lacks the name, or the object is no
            environment class; a module holds no or several environment classes.
    """
    if ":" not in path and all(part.isidentifier() for part in path.split(".")):
        try:
            return _module_environment(importlib.import_module(path), path)
        except ModuleNotFoundError:
            pass  # not a module: a 'module.Class' path
    module_name, _, name = path.rpartition(":") if ":" in path else path.rpartition(".")
    if not module_name or not name.isidentifier():
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            message("environment", path, "a Gymnasium id, a registered key or 'module.Class'"),
        ) from exc
    target = getattr(module, name, None)
    if not _is_environment_class(target):
        raise ConfigError(
            message("environment", path, f"an environment class in module {module_name!r}")
        )
    return target


def _module_environment(module: Any, path: str) -> type:
    """The one environment class in ``module`` (classes it only subclasses do not count)."""
    found = {
        cls
        for cls in vars(module).values()
        if _is_environment_class(cls)
        and cls.__module__ != "gymnasium.core"
        and not cls.__module__.startswith("forceexp.")
    }
    found = {cls for cls in found if not any(o is not cls and issubclass(o, cls) for o in found)}
    if len(found) != 1:
        names = sorted(cls.__name__ for cls in found) or "none"
        raise ConfigError(
            message("environment", path, f"a module with one environment class (found {names})")
        )
    return found.pop()


def _is_environment_class(target: Any) -> bool:
    import gymnasium

    from forceexp.environments.environment import Environment
    from forceexp.environments.vectorized import VectorizedEnvironment

    return inspect.isclass(target) and issubclass(
        target, Environment | VectorizedEnvironment | gymnasium.Env
    )


def latest_gym_id(level: str) -> str | None:
    """The newest registered version of an unversioned Gymnasium id (``'CartPole'``)."""
    import gymnasium

    prefix = f"{level}-v"
    versions = [
        (int(key[len(prefix) :]), key)
        for key in gymnasium.registry
        if key.startswith(prefix) and key[len(prefix) :].isdigit()
    ]
    return max(versions)[1] if versions else None


class ParallelEpisodes:
    """The wrapper's bookkeeping for a vectorizable environment's ``reset(num_parallel=n)``.

    Also for a multi-actor environment (``num_actors() > 1``), whose plain ``reset()`` returns
    ``(parallel, states)`` for its actors. Applies the episode limit per sub-environment (or
    actor): one reaching it without terminating reports terminal 2 and is hidden from later
    outputs; the environment keeps stepping it with its last action until every one has ended.
    """

    def __init__(
        self, environment: Any, num_parallel: int, limit: int | None, actors: bool = False
    ) -> None:
        if not isinstance(num_parallel, int | np.integer) or num_parallel < 1:
            raise ConfigError(message("reset.num_parallel", num_parallel, "an int >= 1"))
        vectorizable = getattr(environment, "is_vectorizable", None)
        if not actors and (vectorizable is None or not vectorizable()):
            raise ConfigError(
                f"reset.num_parallel: {environment!r} is not vectorizable; define "
                "is_vectorizable() returning True and reset(num_parallel=...)"
            )
        self.environment, self.limit, self.actors = environment, limit, actors
        self.timesteps = np.zeros(int(num_parallel), dtype=np.int64)
        self.hidden = np.zeros(int(num_parallel), dtype=bool)
        self.running = np.empty(0, dtype=np.int64)  # the environment's own running indices
        self.last_actions: dict[int, Any] = {}

    def reset(self) -> tuple[np.ndarray, Any]:
        """Reset every sub-environment; return ``(parallel, states)``."""
        if self.actors:
            parallel, states = self.environment.reset()
        else:
            parallel, states = self.environment.reset(num_parallel=len(self.timesteps))
        self.running = np.asarray(parallel, dtype=np.int64)
        return self.running.copy(), states

    def execute(self, actions: Any) -> tuple[np.ndarray, Any, np.ndarray, np.ndarray]:
        """Step the running sub-environments; return ``(parallel, states, terminal, reward)``."""
        visible = self.running[~self.hidden[self.running]]
        if not len(visible):
            raise ProtocolError("execute() called after every parallel episode ended")
        full = self._full_actions(visible, actions)
        parallel, states, terminal, reward = self.environment.execute(actions=full)
        parallel = np.asarray(parallel, dtype=np.int64)
        terminal = np.asarray(terminal).astype(np.int64)
        reward = np.asarray(reward, dtype=np.float32)
        shown = ~self.hidden[self.running]
        terminal, reward = terminal[shown], reward[shown]
        self.timesteps[visible] += 1
        if self.limit is not None:
            cut = (terminal == 0) & (self.timesteps[visible] >= self.limit)
            terminal[cut] = TRUNCATED
            self.hidden[visible[cut]] = True
        self.running = parallel
        keep = ~self.hidden[parallel]
        return parallel[keep], _rows(states, keep), terminal, reward

    def _full_actions(self, visible: np.ndarray, actions: Any) -> Any:
        """The given actions of visible sub-environments plus repeated ones of hidden ones."""
        rows = _split_rows(actions, len(visible))
        for index, row in zip(visible.tolist(), rows, strict=True):
            self.last_actions[index] = row
        full = [self.last_actions[index] for index in self.running.tolist()]
        if isinstance(actions, dict):
            return {key: np.stack([row[key] for row in full]) for key in actions}
        return np.stack(full)


def _split_rows(actions: Any, count: int) -> list[Any]:
    if isinstance(actions, dict):
        return [{key: np.asarray(a)[i] for key, a in actions.items()} for i in range(count)]
    arr = np.asarray(actions)
    if len(arr) != count:
        raise ConfigError(
            message("execute.actions", f"{len(arr)} rows", f"one row per running index ({count})")
        )
    return list(arr)


def _rows(states: Any, keep: np.ndarray) -> Any:
    """The rows ``keep`` of states for the running indices.

    Row ``i`` belongs to ``parallel[i]``; rows past ``len(parallel)`` are ignored, as
    Tensorforce's runner does (its multi-actor example returns every actor's state).
    """
    count = len(keep)
    if isinstance(states, dict):
        return {key: np.asarray(value)[:count][keep] for key, value in states.items()}
    return np.asarray(states)[:count][keep]
