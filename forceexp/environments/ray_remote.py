"""Environments as Ray actors: one actor per environment, anywhere on a Ray cluster.

Ray is imported only here and in ``forceexp.execution.distributed`` (the ``ray`` extra). The
environment spec is sent to the actor as Ray sends any argument (a name or config dict travels as
such); states and actions come back as arrays through Ray's object store. A call that fails
because its actor died is reported with the environment index and the actor's node, and a
call that takes longer than ``step_timeout`` is reported too: the runner never hangs on a dead
actor.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from forceexp.environments.remote import RemoteEnvironment, RemoteEnvironmentError
from forceexp.errors import ConfigError, message

LOOPBACK = "127.0.0.1"
#: Actor options unless given: no CPU reserved (an environment step is mostly short; give
#: ``num_cpus=1`` for heavy simulators), actors spread over the cluster's nodes.
DEFAULT_OPTIONS: dict[str, Any] = {"num_cpus": 0, "scheduling_strategy": "SPREAD"}


def loopback_environment(address: str | None = None) -> bool:
    """Set the variables that keep a local Ray on 127.0.0.1 (before ``ray`` is imported).

    Sets ``RAY_USAGE_STATS_ENABLED=0`` and, for a local instance (``address`` and
    ``RAY_ADDRESS`` unset) or a ``127.0.0.1:port`` address, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    (values already set are kept). Returns whether a local instance would be started.
    """
    target = address or os.environ.get("RAY_ADDRESS")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if target is None or target.rsplit(":", 1)[0] in (LOOPBACK, "localhost"):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    return target is None


def init_ray(address: str | None = None, **kwargs: Any) -> Any:
    """Connect to Ray once per process: ``address`` (``'auto'``, ``'ray://...'``, ``host:port``).

    Without an address (and without ``RAY_ADDRESS`` set) a local instance is started, bound to
    127.0.0.1 only (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` and ``_node_ip_address``; without
    them Ray replaces 127.0.0.1 by the host's address), with usage statistics off and no
    dashboard; a ``127.0.0.1:port`` address is kept as given the same way. Does nothing when
    Ray is already initialised (``ray.init`` called by the user). The variables are read when
    ``ray`` is imported: in a process that imported it before, set them yourself.

    Args:
        address: Cluster address, or None for a local instance.
        **kwargs: Further ``ray.init`` arguments (``num_cpus``, ``resources``, ...).

    Returns:
        The ``ray`` module.
    """
    local = loopback_environment(address)
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "remote='ray' needs Ray: pip install 'forceexp[ray]' (ray and hydra-ray-launcher)"
        ) from exc
    if ray.is_initialized():
        return ray
    if local:
        kwargs = {"include_dashboard": False, "_node_ip_address": LOOPBACK, **kwargs}
    ray.init(address=address, log_to_driver=False, **kwargs)
    return ray


def node_address(node_id: str) -> str:
    """``address (node id prefix)`` of a Ray node, for messages and tests."""
    import ray

    for node in ray.nodes():
        if node["NodeID"] == node_id:
            return f"{node['NodeManagerAddress']} ({node_id[:8]})"
    return node_id[:8]


def writable(value: Any) -> Any:
    """Arrays from Ray's object store are read-only views; copy those (dicts of them too)."""
    if isinstance(value, dict):
        return {key: writable(x) for key, x in value.items()}
    if isinstance(value, np.ndarray) and not value.flags.writeable:
        return value.copy()
    return value


def actor_options(options: Any, count: int, name: str = "ray_options") -> list[dict[str, Any]]:
    """One dict of Ray actor options per actor (``num_cpus``, ``resources``, ...).

    Args:
        options: None, one dict for every actor, or a list of ``count`` dicts.
        count: Number of actors.
        name: Argument name for error messages.
    """
    if options is None:
        return [{} for _ in range(count)]
    if isinstance(options, dict):
        return [dict(options) for _ in range(count)]
    if isinstance(options, Sequence) and len(options) == count:
        return [dict(o or {}) for o in options]
    raise ConfigError(message(name, options, f"None, one dict, or a list of {count} dicts"))


@functools.cache
def remote_class(cls: type) -> Any:
    """``ray.remote(cls)``, made once per class."""
    import ray

    return ray.remote(cls)


class EnvironmentActor:
    """The actor side: creates the environment from its spec and answers reset/execute."""

    def __init__(self, spec: Any, max_episode_timesteps: int | None) -> None:
        from forceexp.environments import create
        from forceexp.environments.vectorized import refuse_remote

        self.environment = create(spec, max_episode_timesteps=max_episode_timesteps)
        refuse_remote(self.environment)

    def specs(self) -> tuple[Any, Any, int | None, str]:
        """States spec, actions spec, episode limit and this actor's node id."""
        import ray

        env = self.environment
        node = ray.get_runtime_context().get_node_id()
        return env.states(), env.actions(), env.max_episode_timesteps(), node

    def reset(self, seed: int | None) -> tuple[dict[str, Any], Any]:
        """Reset; returns ``({}, states)``."""
        return {}, self.environment.reset(seed=seed)

    def execute(self, actions: Any) -> tuple[dict[str, Any], Any]:
        """Step; returns ``({terminal, reward}, states)``."""
        states, terminal, reward = self.environment.execute(actions)
        return {"terminal": int(terminal), "reward": float(reward)}, states

    def close(self) -> None:
        """Close the environment."""
        self.environment.close()


class RayEnvironment(RemoteEnvironment):
    """An environment living in a Ray actor (``remote='ray'``).

    Args:
        environment: Environment spec re-created in the actor (a name, dict, class, factory).
        index: Environment index, named in error messages.
        max_episode_timesteps: Episode limit applied in the actor.
        options: Ray actor options, e.g. ``{"resources": {"envs": 1}}`` to place it on the
            nodes that offer that custom resource, ``{"num_cpus": 1}`` to reserve a core
            (default: ``DEFAULT_OPTIONS``, no reservation, actors spread over the nodes).
        step_timeout: Seconds a ``reset`` or ``execute`` may take (None: no limit).
        wait: Wait for the actor's specs here; if False, call ``wait_ready`` before use.
        start_timeout: Seconds the actor may take to be placed and create its environment;
            an actor the cluster cannot place (resources it lacks) is reported after it.
    """

    def __init__(
        self,
        environment: Any,
        index: int = 0,
        max_episode_timesteps: int | None = None,
        options: dict[str, Any] | None = None,
        step_timeout: float | None = None,
        wait: bool = True,
        start_timeout: float = 120.0,
    ) -> None:
        super().__init__(None)
        from forceexp.environments.multiprocessing import check_step_timeout

        check_step_timeout(step_timeout)
        init_ray()
        self.index, self.step_timeout, self.node = index, step_timeout, "?"
        self.options = {**DEFAULT_OPTIONS, **(options or {})}
        self._call, self._ref, self._closed = "start", None, False
        self._start_timeout = start_timeout
        actor = remote_class(EnvironmentActor).options(**self.options)
        self.actor = actor.remote(environment, max_episode_timesteps)
        self._ref = self.actor.specs.remote()
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until the actor has created its environment; keep its specs and node."""
        try:
            specs = self._get(self._ref, self._start_timeout)
        except BaseException:
            self.close()
            raise
        self._states_spec, self._actions_spec, self._remote_limit, node_id = specs
        self.node = node_address(node_id)

    def __repr__(self) -> str:
        return f"RayEnvironment(index={self.index}, node={self.node})"

    @property
    def ref(self) -> Any:
        """Ray object ref of the pending answer (for ``ray.wait``), or None."""
        return self._ref

    def _send(self, kind: str, meta: dict[str, Any], value: Any) -> None:
        self._call = kind
        if kind == "reset":
            self._ref = self.actor.reset.remote(meta["seed"])
        else:
            self._ref = self.actor.execute.remote(value)

    def _receive(self) -> tuple[dict[str, Any], Any]:
        ref, self._ref = self._ref, None
        meta, states = self._get(ref, self.step_timeout)
        return meta, writable(states)

    def _get(self, ref: Any, timeout: float | None) -> Any:
        """``ray.get`` with the actor's failures as ``RemoteEnvironmentError``."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        where = f"environments[{self.index}] (Ray actor on node {self.node})"
        try:
            return ray.get(ref, timeout=timeout)
        except RayTaskError as exc:
            raise RemoteEnvironmentError(
                f"{where}: the environment raised in {self._call!r}:\n{exc}"
            ) from None
        except RayActorError as exc:
            detail = "\n".join(str(exc).splitlines()[:12])
            raise RemoteEnvironmentError(
                f"{where}: the actor died during {self._call!r} ({type(exc).__name__}: {detail})"
            ) from None
        except GetTimeoutError:
            ray.kill(self.actor)
            hint = ""
            if self._call == "start":
                hint = (
                    f" (not placed? it asks for {self.options}; the cluster has "
                    f"{ray.available_resources()} free)"
                )
            raise RemoteEnvironmentError(
                f"{where}: no answer to {self._call!r} within {timeout} s{hint}; actor killed"
            ) from None

    def close(self) -> None:
        """Close the environment and end the actor; one busy with a call is killed at once."""
        if self._closed:
            return
        self._closed = True
        if self._ref is None:
            end_actor(self.actor)
        else:  # a close would wait behind the pending (perhaps hung) call
            import ray

            ray.kill(self.actor)


def end_actor(actor: Any) -> None:
    """Ask ``actor`` to close (at most 10 s; it may be dead already), then kill it."""
    import ray

    with contextlib.suppress(Exception):
        ray.get(actor.close.remote(), timeout=10.0)
    ray.kill(actor)


def wait_ready(handles: Sequence[RayEnvironment], indices: set[int], timeout: float) -> list[int]:
    """Indices (of ``indices``) whose Ray environments have an answer waiting.

    Waits at most ``timeout`` seconds, or the smallest ``step_timeout`` of the environments.
    """
    import ray

    refs = {handles[i].ref: i for i in indices}
    limits = [handles[i].step_timeout for i in indices if handles[i].step_timeout is not None]
    timeout = min([timeout, *limits])
    ready, _ = ray.wait(list(refs), num_returns=1, timeout=timeout)
    if not ready:
        late = sorted(indices)
        nodes = sorted({handles[i].node for i in late})
        raise RemoteEnvironmentError(
            f"environments {late} (Ray actors on {', '.join(nodes)}): none answered within "
            f"{timeout} s"
        )
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
    return sorted(refs[ref] for ref in ready)


def start_all(
    specs: list[Any],
    limit: int | None,
    options: Any = None,
    step_timeout: float | None = None,
) -> list[RayEnvironment]:
    """Start one Ray actor per spec (all at once), then wait for every one."""
    from forceexp.execution.pool import close_all

    per_actor = actor_options(options, len(specs))
    actors: list[RayEnvironment] = []
    try:
        for i, (spec, opts) in enumerate(zip(specs, per_actor, strict=True)):
            actors.append(RayEnvironment(spec, i, limit, opts, step_timeout, wait=False))
        for actor in actors:
            actor.wait_ready()
    except BaseException:
        close_all(actors)
        raise
    return actors
