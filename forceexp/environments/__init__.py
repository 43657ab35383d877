"""Environment registry and ``create()``: every way to name an environment ends here."""

from __future__ import annotations

import inspect
from typing import Any

from forceexp.environments.classic_control import AcrobotVectorized, CartPoleVectorized
from forceexp.environments.compat import import_environment, latest_gym_id
from forceexp.environments.custom_cartpole import CustomCartPole
from forceexp.environments.environment import Environment, EnvironmentWrapper
from forceexp.environments.gym import GymEnvironment
from forceexp.environments.gym_vector import GymVectorEnvironment
from forceexp.environments.testing import (
    IdentityEnvironment,
    MaskedChoiceEnvironment,
    MultiInputEnvironment,
    TargetEnvironment,
)
from forceexp.environments.vectorized import VectorizedEnvironment
from forceexp.errors import ConfigError, check_int
from forceexp.registry import Registry, is_spec_file, load_spec_file

ENVIRONMENTS: Registry[type[Environment] | type[VectorizedEnvironment]] = Registry("environment")
ENVIRONMENTS.register("gym", "gymnasium")(GymEnvironment)
ENVIRONMENTS.register("identity")(IdentityEnvironment)
ENVIRONMENTS.register("target")(TargetEnvironment)
ENVIRONMENTS.register("masked_choice")(MaskedChoiceEnvironment)
ENVIRONMENTS.register("multi_input")(MultiInputEnvironment)
ENVIRONMENTS.register("cartpole_vectorized")(CartPoleVectorized)
ENVIRONMENTS.register("acrobot_vectorized")(AcrobotVectorized)
ENVIRONMENTS.register("custom_cartpole")(CustomCartPole)
ENVIRONMENTS.register("gym_vector", "gymnasium_vector")(GymVectorEnvironment)

__all__ = [
    "ENVIRONMENTS",
    "Environment",
    "EnvironmentWrapper",
    "GymVectorEnvironment",
    "VectorizedEnvironment",
    "create",
]


def create(
    environment: Any = None,
    level: Any = None,
    max_episode_timesteps: int | None = None,
    remote: str | None = None,
    **kwargs: Any,
) -> EnvironmentWrapper | VectorizedEnvironment:
    """Create a wrapped environment (or a vectorised one, returned as is).

    Args:
        environment: A Gymnasium id (``'CartPole-v1'``), a registered key (``'gym'``,
            ``'identity'``, ...), a ``.json``/``.yaml`` spec file, a dict with ``environment``
            or ``type``, an ``Environment`` or ``VectorizedEnvironment`` subclass or instance, a
            ``gymnasium.Env`` or ``gymnasium.vector.VectorEnv`` instance (``gymnasium.make_vec``;
            ``'gym_vector'`` with ``level=<id>``, ``num_environments=N`` makes one),
            or a zero-argument factory returning one of these.
            Vectorised ones (``'cartpole_vectorized'``, ...) take ``num_environments=N``.
        level: The Gymnasium id when ``environment='gym'``.
        max_episode_timesteps: Episode limit; reaching it ends the episode with terminal 2.
        remote: ``'socket-server'`` serves the environment over TCP and blocks (kwargs
            ``host``, ``port``, ``secret``, ...; see ``forceexp.environments.socket.serve``);
            ``'socket-client'`` connects to one (kwargs ``host``, ``port``, ``secret``, ...);
            ``'multiprocessing'`` runs it in a worker process; ``'ray'`` in a Ray actor (kwargs
            ``options`` = Ray actor options, ``step_timeout``; connects with
            ``ray.init(address=...)`` if called first, else starts a local instance).
        **kwargs: Passed to the environment's constructor.

    Returns:
        An ``EnvironmentWrapper`` enforcing the limit and checking outputs against the specs,
        or the ``VectorizedEnvironment`` itself (which applies the limit per sub-environment).
    """
    if remote is not None:
        check_int("max_episode_timesteps", max_episode_timesteps, 1, optional=True)
        return _remote(environment, level, max_episode_timesteps, remote, kwargs)
    if is_spec_file(environment):
        environment = load_spec_file(environment)
    if isinstance(environment, dict):
        spec = dict(environment)
        environment = spec.pop("environment", None) or spec.pop("type", None)
        level = spec.pop("level", level)
        max_episode_timesteps = spec.pop("max_episode_timesteps", max_episode_timesteps)
        kwargs = {**spec, **kwargs}
    check_int("max_episode_timesteps", max_episode_timesteps, 1, optional=True)
    env = _instantiate(environment, level, max_episode_timesteps, kwargs)
    if isinstance(env, VectorizedEnvironment):
        if max_episode_timesteps is not None:
            env.set_max_episode_timesteps(max_episode_timesteps)
        return env
    if isinstance(env, EnvironmentWrapper):
        if (
            max_episode_timesteps is not None
            and env.max_episode_timesteps() != max_episode_timesteps
        ):
            return EnvironmentWrapper(env.environment, max_episode_timesteps)
        return env
    return EnvironmentWrapper(env, max_episode_timesteps)


def _instantiate(
    environment: Any, level: Any, max_episode_timesteps: int | None, kwargs: dict[str, Any]
) -> Environment | VectorizedEnvironment:
    import gymnasium

    if isinstance(environment, Environment | VectorizedEnvironment):
        return environment
    if isinstance(environment, gymnasium.Env):
        return GymEnvironment(environment)
    if isinstance(environment, gymnasium.vector.VectorEnv):
        return GymVectorEnvironment(environment)
    if inspect.isclass(environment) and issubclass(
        environment, Environment | VectorizedEnvironment
    ):
        return environment(**kwargs)
    if inspect.isclass(environment) and issubclass(environment, gymnasium.Env):
        return GymEnvironment(environment(**kwargs))
    if isinstance(environment, str):
        return _from_name(environment, level, max_episode_timesteps, kwargs)
    if callable(environment) and not inspect.isclass(environment):
        return _instantiate(environment(), level, max_episode_timesteps, kwargs)
    raise ConfigError(
        f"environment: {environment!r} is invalid; expected a Gymnasium id, a registered key, "
        "an Environment class or instance, a gymnasium.Env or a factory"
    )


def _from_name(
    name: str, level: Any, max_episode_timesteps: int | None, kwargs: dict[str, Any]
) -> Environment | VectorizedEnvironment:
    """A registered key, a Gymnasium id (versioned or not) or an importable class path."""
    import gymnasium

    if name in ENVIRONMENTS:
        cls = ENVIRONMENTS.get(name)
        if cls is GymVectorEnvironment:
            return cls(level, max_episode_timesteps, **kwargs)
        if cls is not GymEnvironment:
            return cls(**kwargs)
        if level is None:
            raise ConfigError("environment: 'gym' needs level=<Gymnasium id>")
        if isinstance(level, str) and level not in gymnasium.registry:
            level = latest_gym_id(level) or level  # Tensorforce's 'CartPole': newest version
        return GymEnvironment(level, max_episode_timesteps, **kwargs)
    gym_id = name if name in gymnasium.registry else latest_gym_id(name)
    if gym_id is not None:
        return GymEnvironment(gym_id, max_episode_timesteps, **kwargs)
    base, _, version = name.rpartition("-v")
    newest = latest_gym_id(base) if base and version.isdigit() else None
    if newest is not None:  # e.g. Tensorforce's 'LunarLander-v2', gone from Gymnasium
        raise ConfigError(
            f"environment: Gymnasium does not register {name!r}; its current version is "
            f"{newest!r} (or give {base!r} for the newest)"
        )
    target = import_environment(name)
    if target is not None:
        return _instantiate(target, level, max_episode_timesteps, kwargs)
    raise ConfigError(
        f"environment: unknown environment {name!r}; expected a registered key "
        f"({', '.join(ENVIRONMENTS.keys())}), a Gymnasium id such as 'CartPole-v1' or an "
        "importable 'module.Class' path"
    )


REMOTES = ("multiprocessing", "ray", "socket-client", "socket-server")
_SERVER_KEYS = (
    "host",
    "port",
    "secret",
    "max_frame",
    "read_timeout",
    "frame_timeout",
    "max_sessions",
    "max_connections",
)


def _remote(
    environment: Any,
    level: Any,
    max_episode_timesteps: int | None,
    remote: str,
    kwargs: dict[str, Any],
) -> Any:
    """Dispatch ``create(..., remote=...)``."""
    if remote == "socket-client":
        from forceexp.environments.socket import SocketEnvironment

        return SocketEnvironment(max_episode_timesteps=max_episode_timesteps, **kwargs)
    spec: Any = environment
    if level is not None or (remote == "socket-server" and set(kwargs) - set(_SERVER_KEYS)):
        spec = {"environment": environment, "level": level}
        spec.update({k: v for k, v in kwargs.items() if k not in _SERVER_KEYS})
    if remote == "socket-server":
        from forceexp.environments.socket import serve

        server = {k: v for k, v in kwargs.items() if k in _SERVER_KEYS}
        serve(spec, max_episode_timesteps=max_episode_timesteps, **server)
        return None
    if remote in ("multiprocessing", "ray"):
        step_timeout = kwargs.pop("step_timeout", None)
        options = kwargs.pop("options", None) if remote == "ray" else None
        if kwargs and spec is environment:
            spec = {"environment": environment, **kwargs}
        if remote == "ray":
            from forceexp.environments.ray_remote import RayEnvironment

            return RayEnvironment(spec, 0, max_episode_timesteps, options, step_timeout)
        from forceexp.environments.multiprocessing import ProcessEnvironment

        return ProcessEnvironment(
            spec, max_episode_timesteps=max_episode_timesteps, step_timeout=step_timeout
        )
    raise ConfigError(f"remote: {remote!r} is invalid; expected one of {', '.join(REMOTES)}")
