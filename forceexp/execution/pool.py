"""Environment pools for the runner: local handles, worker processes, Ray actors, sockets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from forceexp.environments import VectorizedEnvironment, create
from forceexp.environments.actors import as_slots
from forceexp.errors import ConfigError, message


class LocalHandle:
    """Gives a local environment the send/receive interface of remote ones (runs at send)."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.result: tuple[str, Any] | None = None

    def send_reset(self, seed: int | None = None) -> None:
        """Reset now; the result waits for ``receive``."""
        self.result = ("reset", self.environment.reset(seed=seed))

    def send_execute(self, actions: Any) -> None:
        """Step now; the result waits for ``receive``."""
        self.result = ("execute", self.environment.execute(actions))

    def receive(self) -> tuple[str, Any]:
        """The last result as ``(kind, value)``."""
        result, self.result = self.result, None
        return result


def close_all(environments: Sequence[Any]) -> None:
    """Close every environment, even if some raise (first error re-raised at the end)."""
    error: BaseException | None = None
    for env in environments:
        try:
            env.close()
        except Exception as exc:
            error = error or exc
    if error is not None:
        raise error


def create_all(
    specs: list[Any],
    limit: int | None,
    remote: str | None,
    step_timeout: float | None = None,
    ray_options: Any = None,
) -> list[Any]:
    """Create local environments, or start one worker process or Ray actor per spec (all at once).

    A vectorised environment is created once, whatever the number of specs (one, or
    ``num_environments`` copies of the same spec); so is a Tensorforce-style vectorizable
    (given several specs) or multi-actor one, as ``ParallelSlots``. ``ray_options``: Ray actor
    options with ``remote='ray'`` (one dict, or one per spec).
    """
    if remote is None:
        first = create(specs[0], max_episode_timesteps=limit)
        if isinstance(first, VectorizedEnvironment):
            from forceexp.execution.vectorized import check_size

            try:
                check_size(first, specs)
            except ConfigError:
                first.close()
                raise
            return [first]
        try:
            slots = as_slots(first, len(specs))  # Tensorforce's vectorizable / multi-actor envs
        except ConfigError:
            first.close()
            raise
        if slots is not None:
            return [slots]
        return [first, *(create(spec, max_episode_timesteps=limit) for spec in specs[1:])]
    if remote == "ray":
        from forceexp.environments.ray_remote import start_all

        return start_all(specs, limit, ray_options, step_timeout)
    from forceexp.environments.multiprocessing import ProcessEnvironment

    workers: list[ProcessEnvironment] = []
    try:
        for i, spec in enumerate(specs):
            workers.append(
                ProcessEnvironment(spec, i, limit, wait=False, step_timeout=step_timeout)
            )
        for worker in workers:
            worker.wait_ready()
    except BaseException:
        close_all(workers)
        raise
    return workers


def as_list(value: Any, name: str) -> list[Any]:
    """A comma-separated string or a sequence as a list (``name`` for error messages)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, int):
        return [value]
    if isinstance(value, Sequence):
        return list(value)
    raise ConfigError(message(name, value, "a value, a comma-separated string or a list"))


def local_specs(environment: Any) -> dict[str, Any]:
    """States/actions of a local copy of ``environment`` (checked against the servers' specs)."""
    if environment is None:
        return {}
    probe = create(environment)
    try:
        return {"states": probe.states(), "actions": probe.actions()}
    finally:
        if probe is not environment and getattr(probe, "environment", None) is not environment:
            probe.close()


def connect(
    host: Any,
    port: Any,
    num_parallel: int | None,
    secret: str | None,
    limit: int | None,
    expected: dict[str, Any],
) -> list[Any]:
    """Connect one socket client per (host, port); a single port counts up per environment."""
    from forceexp.environments.socket import SocketEnvironment

    if port is None:
        raise ConfigError("Runner: remote='socket-client' needs port= (an int or a list)")
    hosts, ports = as_list(host, "host"), [int(p) for p in as_list(port, "port")]
    count = num_parallel or max(len(hosts), len(ports))
    if len(hosts) == 1:
        hosts = hosts * count
    if len(ports) == 1:
        ports = [ports[0] + i for i in range(count)]
    if len(hosts) != count or len(ports) != count:
        raise ConfigError(
            f"Runner: {len(hosts)} host(s) and {len(ports)} port(s) for num_parallel={count}"
        )
    clients: list[Any] = []
    try:
        for i, (h, p) in enumerate(zip(hosts, ports, strict=True)):
            clients.append(
                SocketEnvironment(h, p, i, secret=secret, max_episode_timesteps=limit, **expected)
            )
    except BaseException:
        close_all(clients)
        raise
    return clients


def evaluation_split(
    environment: Any, environments: Sequence[Any] | None, num_parallel: int | None
) -> tuple[Any, list[Any] | None, int | None, Any]:
    """``Runner(evaluation=True)``: the training environments and the last, evaluating one.

    Returns ``(environment, environments, num_parallel, evaluation_environment)``.

    Raises:
        ConfigError: Fewer than 2 environments, or an instance that would be shared.
    """
    if environments is not None and len(environments) >= 2:
        count = None if num_parallel is None else num_parallel - 1
        return environment, list(environments[:-1]), count, environments[-1]
    if environments is None and num_parallel is not None and num_parallel >= 2:
        if is_instance(environment):
            raise ConfigError(
                "Runner.evaluation: an environment instance cannot be copied for evaluation; "
                "pass its name, spec dict or a factory"
            )
        return environment, None, num_parallel - 1, environment
    raise ConfigError(
        message(
            "Runner.evaluation",
            True,
            "num_parallel >= 2 or 2 or more environments (the last one evaluates)",
        )
    )


def is_instance(environment: Any) -> bool:
    """Whether ``environment`` is an environment object (not a spec, name or factory)."""
    import gymnasium

    from forceexp.environments import Environment

    return isinstance(environment, Environment | gymnasium.Env)
