"""Ray rollout workers with CPU agent copies (PPO, off-policy agents), one learner that updates.

Each ``RolloutWorker`` actor holds ``envs_per_worker`` environments and a CPU copy of the agent,
and collects exactly what a local ``Runner`` would (the batched loop, same seeds); where the
local agent would update, the worker hands its rollout (GAE already computed) to the learner.
``DistributedRunner`` (``runner=ray``) broadcasts the learner's weights, waits for every worker
(synchronous: the update sees only on-policy data), joins the rollouts in the ``(T, N)`` row
order of a local run with ``N = num_workers * envs_per_worker`` slots, and runs the agent's own
update on them. A worker that dies is reported with its index and node, replaced, and its
rollout collected again, up to ``max_worker_restarts`` times; nothing waits forever.

Off-policy agents (DQN family, DPG/DDPG, TD3, SAC) get ``ReplayWorker`` actors instead, served
asynchronously: whichever worker delivers its steps first is replayed into the learner's memory
(training as due) and sent the new weights (``replay_worker.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from forceexp.environments.ray_remote import (
    DEFAULT_OPTIONS,
    actor_options,
    end_actor,
    init_ray,
    node_address,
    remote_class,
)
from forceexp.environments.remote import RemoteEnvironmentError
from forceexp.errors import ConfigError, check_int, message
from forceexp.execution.progress import Progress
from forceexp.execution.replay_worker import ReplayWorker, module_weights, replay_step
from forceexp.execution.rollout_worker import RolloutWorker, merge_rollouts, nbytes

log = logging.getLogger(__name__)
WORKER_SEED_STRIDE = 7919  # agent seeds of workers 1, 2, ...: seed + k * stride


def check_learner(agent: Any, num_parallel: int) -> bool:
    """Raise unless the workers can copy ``agent``; return whether it is off-policy.

    PPO and the off-policy agents (DQN family, DPG/DDPG, TD3, SAC) with a feed-forward network
    and no ``normalize_states`` are accepted; an off-policy learner needs one slot per worker
    environment (``parallel_interactions = num_workers * envs_per_worker``) for its memory.
    """
    from forceexp.agents.off_policy import OffPolicyAgent
    from forceexp.agents.ppo import PPOAgent

    off_policy = isinstance(agent, OffPolicyAgent)
    if not isinstance(agent, PPOAgent) and not off_policy:
        raise ConfigError(
            message(
                "agent",
                getattr(agent, "name", agent),
                "'ppo' or an off-policy agent (dqn family, dpg, ddpg, td3, sac) for runner=ray; "
                "other agents: runner=default or Runner(remote='ray')",
            )
        )
    if not off_policy and (agent._internals or agent.policy.normalizers):
        raise ConfigError(
            "agent: recurrent layers and normalize_states are not supported by runner=ray "
            "(their state lives in each worker); use a feed-forward network without "
            "normalize_states"
        )
    if off_policy and agent.parallel_interactions != num_parallel:
        raise ConfigError(
            message(
                "agent.parallel_interactions",
                agent.parallel_interactions,
                f"{num_parallel} (num_workers * envs_per_worker: one replay slot per worker "
                "environment)",
            )
        )
    return off_policy


class DistributedRunner:
    """Trains PPO or an off-policy agent with ``num_workers`` Ray rollout workers (``runner=ray``).

    Args:
        agent: The learner ``Agent`` (PPO: its weights are broadcast before every rollout;
            off-policy: sent with every request, ``parallel_interactions`` = all environments).
        environment: Environment spec each worker creates ``envs_per_worker`` times.
        num_workers: Rollout worker actors.
        envs_per_worker: Environments per worker (the local equivalent has
            ``num_parallel = num_workers * envs_per_worker``).
        max_episode_timesteps: Episode limit.
        seed: Environment ``j`` of worker ``k`` is seeded ``seed + k * envs_per_worker + j``.
        address: Ray cluster address (``'auto'``, ``host:port``, ``ray://...``); None starts a
            local instance on 127.0.0.1 (``init`` arguments: ``ray_init``).
        worker_options: Ray actor options per worker (one dict or a list), e.g.
            ``{"resources": {"rollouts": 1}}`` to place workers on the nodes offering it.
        ray_init: Extra ``ray.init`` arguments (``num_cpus``, ...).
        max_worker_restarts: Dead workers replaced in a run before giving up with an error.
        timeout: Seconds one rollout (or a worker's start) may take before it is reported.
        steps_per_round: Off-policy agents: steps per environment a worker takes between two
            deliveries of transitions (and two weight loads).
    """

    def __init__(
        self,
        agent: Any,
        environment: Any,
        num_workers: int = 2,
        envs_per_worker: int = 4,
        max_episode_timesteps: int | None = None,
        seed: int | None = None,
        address: str | None = None,
        worker_options: Any = None,
        ray_init: dict[str, Any] | None = None,
        max_worker_restarts: int = 2,
        timeout: float = 600.0,
        steps_per_round: int = 16,
    ) -> None:
        check_int("runner.num_workers", num_workers, 1)
        check_int("runner.envs_per_worker", envs_per_worker, 1)
        check_int("runner.max_worker_restarts", max_worker_restarts, 0)
        check_int("runner.seed", seed, optional=True)
        check_int("runner.steps_per_round", steps_per_round, 1)
        self.off_policy = check_learner(agent, num_workers * envs_per_worker)
        self.agent, self.seed, self.timeout = agent, seed, timeout
        self.steps_per_round = steps_per_round
        self._env_spec, self._max_episode_timesteps = environment, max_episode_timesteps
        self.counts = [envs_per_worker] * num_workers
        self._options = actor_options(worker_options, num_workers, "runner.worker_options")
        self._restarts_left = max_worker_restarts
        self.episode_returns: list[float] = []
        self.episode_timesteps: list[int] = []
        self.episode_seconds: list[float] = []
        self.evaluation_returns: list[float] = []  # periodic evaluations (milestones) append
        self.timesteps = self.episodes = self.updates = 0
        self.history: list[dict[str, Any]] = []  # per round: seconds, bytes, per-worker steps
        self._ray = init_ray(address, **(ray_init or {}))
        self.workers: list[Any] = [None] * num_workers
        self.nodes: list[str] = ["?"] * num_workers
        try:
            for k in range(num_workers):
                self._start(k)
            self._wait_started(range(num_workers))
        except BaseException:
            self.close()
            raise

    @property
    def num_parallel(self) -> int:
        """Environments over all workers."""
        return sum(self.counts)

    def _start(self, k: int) -> None:
        """Start worker ``k`` (again, after a death: same seeds, fresh episodes)."""
        seed = None if self.seed is None else self.seed + sum(self.counts[:k])
        agent_seed = self.agent.spec.get("seed")
        if agent_seed is not None and k > 0:
            agent_seed += k * WORKER_SEED_STRIDE
        options = {**DEFAULT_OPTIONS, **self._options[k]}
        self.workers[k] = (
            remote_class(ReplayWorker if self.off_policy else RolloutWorker)
            .options(**options)
            .remote(
                self.agent.spec,
                self._env_spec,
                self.counts[k],
                self._max_episode_timesteps,
                seed,
                agent_seed,
            )
        )

    def _wait_started(self, indices: Any) -> None:
        ray = self._ray
        for k in indices:
            try:
                node = ray.get(self.workers[k].node.remote(), timeout=self.timeout)
            except Exception as exc:
                raise RemoteEnvironmentError(
                    f"runner.workers[{k}]: did not start within {self.timeout} s (asks for "
                    f"{self._options[k] or DEFAULT_OPTIONS}; free: {ray.available_resources()})"
                    f": {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                ) from None
            self.nodes[k] = node_address(node)

    # ------------------------------------------------------------------ running
    def run(
        self,
        num_episodes: int | None = None,
        num_timesteps: int | None = None,
        callback: Callable[[Any, int], bool] | None = None,
        use_tqdm: bool = True,
    ) -> None:
        """Collect and update until ``num_episodes`` or ``num_timesteps`` (whole rollouts).

        Each run starts its statistics afresh (``episode_returns``, ``episodes``, ``timesteps``,
        ``updates``), as ``Runner.run`` does; the workers' episodes go on across runs.

        Args:
            num_episodes: Episodes to complete (checked after each rollout round).
            num_timesteps: Steps over all workers (the last round may overshoot by up to one
                rollout, ``rollout_length * num_parallel`` steps).
            callback: ``callback(runner, slot)`` after each episode; ``False`` stops after the
                round.
            use_tqdm: Show a progress bar on a terminal (else a log line now and then).
        """
        if num_episodes is None and num_timesteps is None:
            raise ConfigError("run: give num_episodes and/or num_timesteps")
        check_int("run.num_episodes", num_episodes, 1, optional=True)
        check_int("run.num_timesteps", num_timesteps, 1, optional=True)
        self.episode_returns, self.episode_timesteps, self.episode_seconds = [], [], []
        self.timesteps = self.episodes = self.updates = 0
        progress = Progress(num_episodes, num_timesteps, use_tqdm)
        stop = False
        try:
            if self.off_policy:
                self._run_asynchronous(callback, progress, num_episodes, num_timesteps)
            while not stop and not self.off_policy:
                stop = self._round(callback, progress)
                stop = stop or (num_timesteps is not None and self.timesteps >= num_timesteps)
                stop = stop or (num_episodes is not None and self.episodes >= num_episodes)
        finally:
            progress.close()

    def _weights(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.agent.policy.state_dict().items()}

    def _round(self, callback: Callable[[Any, int], bool] | None, progress: Progress) -> bool:
        """One synchronous round: broadcast, collect from every worker, update once."""
        start = time.perf_counter()
        weights = self._weights()
        ref = self._ray.put(weights)
        results = self._collect_all(ref)
        collected = time.perf_counter()
        batch = merge_rollouts([r["rollout"] for r in results], self.counts, self.agent.device)
        stop = any([self._account(k, r, callback, progress) for k, r in enumerate(results)])
        metrics = self.agent._update_batch(batch)
        self.agent.updates += 1
        self.updates += 1
        for observer in self.agent.observers:
            observer.on_update(self.agent, metrics)
        self.history.append(
            {
                "collect_seconds": collected - start,
                "update_seconds": time.perf_counter() - collected,
                "worker_seconds": [r["seconds"] for r in results],
                "worker_steps": [r["steps"] for r in results],
                "weights_bytes": nbytes(weights),
                "rollout_bytes": [nbytes(r["rollout"]) for r in results],
            }
        )
        return stop

    def _collect_all(self, weights: Any) -> list[dict[str, Any]]:
        """Every worker's rollout; a dead worker is replaced and asked again."""
        from ray.exceptions import RayActorError

        ray = self._ray
        pending = {self.workers[k].collect.remote(weights): k for k in range(len(self.workers))}
        results: list[dict[str, Any] | None] = [None] * len(self.workers)
        while pending:
            k, ready = self._next_ready(pending)
            try:
                results[k] = ray.get(ready[0])
            except RayActorError as exc:
                pending[self._replace(k, exc).collect.remote(weights)] = k
        return results

    def _next_ready(self, pending: dict[Any, int]) -> tuple[int, Any]:
        """The first finished request of ``pending`` (removed) and its worker index."""
        ready, _ = self._ray.wait(list(pending), num_returns=1, timeout=self.timeout)
        if not ready:
            late = sorted(pending.values())
            raise RemoteEnvironmentError(
                f"runner.workers{late}: no rollout within {self.timeout} s "
                f"(nodes {[self.nodes[k] for k in late]})"
            )
        return pending.pop(ready[0]), ready

    def _run_asynchronous(
        self,
        callback: Callable[[Any, int], bool] | None,
        progress: Progress,
        num_episodes: int | None,
        num_timesteps: int | None,
    ) -> None:
        """Off-policy: serve whichever worker delivers first; it goes on with the new weights.

        At a budget no new requests go out and the ones in flight are still replayed (nothing
        collected is dropped, so the budget may be overshot by one round per worker). A dead
        worker's unfinished n-step windows are cleared and the worker replaced.
        """
        from ray.exceptions import RayActorError

        self._weights_ref: Any = None  # put again after each update
        pending = {self._request(k): k for k in range(len(self.workers))}
        stop = False
        while pending:
            k, ready = self._next_ready(pending)
            try:
                result = self._ray.get(ready[0])
            except RayActorError as exc:
                self._replace(k, exc)
                first = sum(self.counts[:k])
                self.agent.memory.clear_pending(np.arange(first, first + self.counts[k]))
                if not stop:
                    pending[self._request(k)] = k
                continue
            stop = self._serve(k, result, callback, progress) or stop
            stop = stop or (num_timesteps is not None and self.timesteps >= num_timesteps)
            stop = stop or (num_episodes is not None and self.episodes >= num_episodes)
            if not stop:
                pending[self._request(k)] = k

    def _request(self, k: int) -> Any:
        """Ask worker ``k`` for its next steps with the learner's current weights and counters."""
        if self._weights_ref is None or self._weights_updates != self.agent.updates:  # new
            self._weights = module_weights(self.agent)
            self._weights_ref = self._ray.put(self._weights)
            self._weights_updates = self.agent.updates
        counters = (self.agent.timesteps, self.agent.episodes, self.agent.updates)
        return self.workers[k].collect.remote(self._weights_ref, counters, self.steps_per_round)

    def _serve(
        self,
        k: int,
        result: dict[str, Any],
        callback: Callable[[Any, int], bool] | None,
        progress: Progress,
    ) -> bool:
        """Replay worker ``k``'s steps into the learner (training as due); account them."""
        start, first = time.perf_counter(), sum(self.counts[:k])
        for step in result["steps"]:
            if replay_step(self.agent, step, first) is not None:
                self.updates += 1
        stop = self._account(k, result, callback, progress)
        self.history.append(
            {
                "worker": k,
                "update_seconds": time.perf_counter() - start,
                "worker_seconds": [result["seconds"]],
                "worker_steps": [result["timesteps"]],
                "weights_bytes": nbytes(self._weights),
                "rollout_bytes": [sum(nbytes(part) for step in result["steps"] for part in step)],
            }
        )
        return stop

    def _replace(self, k: int, exc: BaseException) -> Any:
        """Report dead worker ``k`` and start a replacement (or raise when none are left)."""
        cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        text = f"runner.workers[{k}] on node {self.nodes[k]} died ({cause})"
        if self._restarts_left <= 0:
            raise RemoteEnvironmentError(f"{text}; no restarts left (max_worker_restarts)")
        self._restarts_left -= 1
        log.warning("%s; starting a replacement (its episodes restart)", text)
        self._start(k)
        self._wait_started([k])
        return self.workers[k]

    def _account(
        self,
        k: int,
        result: dict[str, Any],
        callback: Callable[[Any, int], bool] | None,
        progress: Progress,
    ) -> bool:
        """Add worker ``k``'s steps and episodes (agent counters too, for schedules and savers).

        Off-policy steps reach the agent's ``timesteps`` when they are replayed.
        """
        stop, first = False, sum(self.counts[:k])
        steps = result["timesteps"] if self.off_policy else result["steps"]
        self.timesteps += steps
        if not self.off_policy:
            self.agent.timesteps += steps
        progress.step(steps)
        for slot, ret, length, seconds in result["episodes"]:
            self.episode_returns.append(ret)
            self.episode_timesteps.append(length)
            self.episode_seconds.append(seconds)
            self.episodes += 1
            self.agent.episodes += 1
            for observer in self.agent.observers:
                observer.on_episode(self.agent, first + slot, ret, length)
            progress.episode(ret)
            if callback is not None and callback(self, first + slot) is False:
                stop = True
        return stop

    def evaluate(
        self, num_episodes: int = 20, deterministic: bool = True, seed: int | None = None
    ) -> dict[str, float]:
        """Mean and std of returns of the learner on a local environment (as ``Runner``)."""
        from forceexp.environments import create
        from forceexp.execution.evaluation import evaluate

        environment = create(self._env_spec, max_episode_timesteps=self._max_episode_timesteps)
        try:
            if seed is None and self.seed is not None:
                seed = self.seed + 10_000
            return evaluate(self.agent, environment, num_episodes, deterministic, seed)
        finally:
            environment.close()

    def close(self) -> None:
        """Close every worker's environments and end the actors."""
        for worker in getattr(self, "workers", []):
            if worker is not None:
                end_actor(worker)
        self.workers = [None] * len(self.counts)
