"""Runner: drives N environments through agent.act -> env.execute -> agent.observe."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from multiprocessing import connection
from typing import Any

import numpy as np

from forceexp.agents.agent import Agent
from forceexp.environments import VectorizedEnvironment, create
from forceexp.environments.actors import ParallelSlots
from forceexp.environments.remote import RemoteEnvironmentError
from forceexp.errors import ConfigError, check_int, message
from forceexp.execution.hooks import Callback, RunHooks, evaluation_callbacks
from forceexp.execution.milestones import PeriodicEvaluation
from forceexp.execution.pool import (
    LocalHandle,
    close_all,
    connect,
    create_all,
    evaluation_split,
    is_instance,
    local_specs,
)
from forceexp.execution.progress import EpisodeStats, Progress
from forceexp.execution.unbatched import Unbatched as _Unbatched
from forceexp.execution.vectorized import VectorizedLoop

REMOTES = (None, "multiprocessing", "socket-client", "ray")
READY_TIMEOUT = 300.0


def stack_states(states: Sequence[Any]) -> Any:
    """Stack per-environment states (arrays or dicts of arrays) along a new leading axis."""
    if isinstance(states[0], dict):
        return {key: _stack([s[key] for s in states]) for key in states[0]}
    return _stack(states)


def _stack(arrays: list[Any]) -> np.ndarray:
    """``np.stack(arrays)``; ``np.array`` does the same for equal shapes, several times faster."""
    try:
        return np.array(arrays)
    except ValueError:
        return np.stack(arrays)  # unequal shapes: np.stack's clearer error


def split_actions(actions: Any, count: int) -> list[Any]:
    """The ``count`` rows of batched actions (an array or a dict of arrays), as a list.

    Scalar actions become Python ``int``/``float``/``bool``, as an unbatched ``act`` gives them
    (environments written for Tensorforce check ``isinstance(action, int)``).
    """
    if isinstance(actions, dict):
        rows = {name: _rows(a) for name, a in actions.items()}
        return [{name: a[row] for name, a in rows.items()} for row in range(count)]
    return _rows(actions)


def _rows(array: np.ndarray) -> list[Any]:
    return array.tolist() if array.ndim == 1 else list(array)


class Runner:
    """Runs an agent on one or more environments and keeps per-episode statistics.

    Args:
        agent: An ``Agent``, or anything ``Agent.create`` takes (a name, a ``.json``/``.yaml``
            file, a dict); created with the environment's specs and
            ``parallel_interactions=num_parallel``.
        environment: Anything ``Environment.create`` takes; copied ``num_parallel`` times
            (give a spec or factory, not an instance, when ``num_parallel > 1``). A vectorised
            environment (``'cartpole_vectorized'``, ...) is created once and stepped as a whole.
        max_episode_timesteps: Episode limit passed to every environment.
        num_parallel: Number of environments (default 1, or ``len(environments)``; for a
            vectorised environment its ``num_environments``, which a given value must equal).
        environments: Explicit list of environment specs, one per slot.
        evaluation_environment: Environment used by ``evaluate`` (default: a new copy).
        seed: Environments are seeded ``seed, seed + 1, ...`` on their first reset.
        step_timeout: With ``remote='multiprocessing'`` or ``'ray'``, seconds a worker's
            ``reset`` or ``execute`` may take before it is killed and reported (None: no limit).
        evaluation: Tensorforce's evaluation environment: the last of the ``num_parallel``
            environments (or of ``environments``) is kept for evaluation, the others train;
            every ``run`` then plays a deterministic evaluation episode on it after every
            ``num_parallel`` training episodes (returns in ``evaluation_returns``).
        ray_options: With ``remote='ray'``, Ray actor options (``num_cpus``, ``resources``),
            one dict for all environments or one per environment (see ``docs/distributed.md``).
    """

    def __init__(
        self,
        agent: Any,
        environment: Any = None,
        max_episode_timesteps: int | None = None,
        num_parallel: int | None = None,
        environments: Sequence[Any] | None = None,
        evaluation_environment: Any = None,
        seed: int | None = None,
        remote: str | None = None,
        blocking: bool = False,
        host: str | Sequence[str] = "127.0.0.1",
        port: int | Sequence[int] | None = None,
        secret: str | None = None,
        step_timeout: float | None = None,
        evaluation: bool = False,
        ray_options: Any = None,
    ) -> None:
        if remote not in REMOTES:
            raise ConfigError(message("remote", remote, f"one of {REMOTES}"))
        check_int("seed", seed, optional=True)
        self.evaluation = bool(evaluation)
        if evaluation:
            if evaluation_environment is not None or remote == "socket-client":
                raise ConfigError(
                    "Runner.evaluation: True takes the last environment for evaluation; "
                    "not with evaluation_environment= or remote='socket-client'"
                )
            environment, environments, num_parallel, evaluation_environment = evaluation_split(
                environment, environments, num_parallel
            )
        self.remote = remote
        self.blocking = blocking
        self._env_spec = environment if environments is None else environments[0]
        self._max_episode_timesteps = max_episode_timesteps
        if remote == "socket-client":
            expected = local_specs(environment)
            self.environments = connect(
                host, port, num_parallel, secret, max_episode_timesteps, expected
            )
        else:
            specs = self._environment_specs(environment, environments, num_parallel, remote)
            self._env_spec = specs[0]
            self.environments = create_all(
                specs, max_episode_timesteps, remote, step_timeout, ray_options
            )
        first = self.environments[0]
        self.vectorized = first if isinstance(first, VectorizedEnvironment) else None
        try:
            self._check_specs()
            self.agent: Agent = self._build_agent(agent)
        except BaseException:
            self._close_environments()
            raise
        self._evaluation_environment = evaluation_environment
        self.seed = seed
        self._seeded = False
        self._clear_statistics()
        self.hooks = RunHooks([])
        self.evaluator: PeriodicEvaluation | None = None

    def _clear_statistics(self) -> None:
        """Start the statistics and counters of a run (each ``run`` has its own, as Tensorforce)."""
        self.episode_returns: list[float] = []
        self.episode_timesteps: list[int] = []
        self.episode_seconds: list[float] = []
        self.evaluation_returns: list[float] = []
        #: length so far of each slot's running episode (read by timestep callbacks)
        self.episode_timestep = np.zeros(self.num_parallel, dtype=np.int64)
        self.timesteps = 0
        self.episodes = 0
        self.updates = 0

    def _check_specs(self) -> None:
        first = self.environments[0]
        for i, env in enumerate(self.environments[1:], start=1):
            if env.states() != first.states() or env.actions() != first.actions():
                raise ConfigError(f"environments[{i}]: specs differ from environments[0]")

    @property
    def num_parallel(self) -> int:
        """Number of environment slots (a vectorised environment's ``num_environments``)."""
        if self.vectorized is not None:
            return self.vectorized.num_environments
        return len(self.environments)

    def _build_agent(self, agent: Any) -> Agent:
        count = self.num_parallel
        self._owns_agent = not isinstance(agent, Agent)
        first = self.environments[0]
        if isinstance(agent, dict) and "directory" in agent:  # Tensorforce's load spec
            overrides = {"parallel_interactions": count} if count > 1 else {}
            agent = Agent.load(**{"environment": first, **overrides, **agent})
        elif self._owns_agent:
            agent = Agent.create(
                agent,
                states=first.states(),
                actions=first.actions(),
                max_episode_timesteps=first.max_episode_timesteps(),
                parallel_interactions=count,
            )
        if agent.parallel_interactions < count:
            raise ConfigError(
                f"agent.parallel_interactions: {agent.parallel_interactions} is less than "
                f"num_parallel={count}"
            )
        return agent

    @staticmethod
    def _environment_specs(
        environment: Any,
        environments: Sequence[Any] | None,
        num_parallel: int | None,
        remote: str | None = None,
    ) -> list[Any]:
        if environments is not None:
            if environment is not None:
                raise ConfigError("Runner: give environment= or environments=, not both")
            if num_parallel is not None and num_parallel != len(environments):
                raise ConfigError(
                    f"num_parallel: {num_parallel} differs from "
                    f"len(environments)={len(environments)}"
                )
            return list(environments)
        if environment is None:
            raise ConfigError("Runner: environment= (or environments=) is required")
        count = 1 if num_parallel is None else num_parallel
        if not isinstance(count, int) or count < 1:
            raise ConfigError(message("num_parallel", num_parallel, "an int >= 1"))
        if (count > 1 or remote is not None) and is_instance(environment):
            raise ConfigError(
                "environment: an environment instance cannot be copied for num_parallel > 1 or "
                "sent to a worker process; "
                "pass its name, spec dict or a factory instead"
            )
        return [environment] * count

    # ------------------------------------------------------------------ running
    def run(
        self,
        num_episodes: int | None = None,
        num_timesteps: int | None = None,
        evaluation: bool = False,
        callback: Callback | Sequence[Callback] | None = None,
        use_tqdm: bool = True,
        batch_agent_calls: bool | None = None,
        sync_episodes: bool = False,
        num_updates: int | None = None,
        callback_episode_frequency: int | None = None,
        callback_timestep_frequency: int | None = None,
        evaluation_callback: Callable[[Runner], float | None] | None = None,
        save_best_agent: str | None = None,
        mean_horizon: int = 1,
    ) -> None:
        """Run until ``num_episodes`` episodes, ``num_timesteps`` steps or ``num_updates`` updates.

        Episodes and timesteps are counted over all environments; the first budget reached ends
        the run. Each run starts its statistics afresh (``episode_returns``, ``episodes``,
        ``timesteps``, ``updates``, ...), as Tensorforce's runner does: after a training run,
        ``run(evaluation=True)``'s ``episode_returns`` hold the evaluation episodes only.

        Args:
            num_episodes: Episodes to complete (running ones finish, so it may overshoot by up to
                ``num_parallel - 1``).
            num_timesteps: Steps to take; at the limit, running episodes are truncated
                (terminal 2) so no half episode leaks into the next ``run``.
            evaluation: Act deterministically and independently, without learning.
            callback: ``callback(runner, parallel)`` (or a list of them) after each episode;
                ``False`` stops.
            use_tqdm: Show progress: a bar when stderr is a terminal, else a log line every 10 s.
            batch_agent_calls: One ``act`` for all environments per step (default: True for
                local environments, False for remote ones, which are then served one at a
                time as they become ready).
            sync_episodes: Start new episodes only when every environment has finished its
                current one.
            num_updates: Agent updates of this run after which running episodes are truncated
                and the run ends.
            callback_episode_frequency: Call ``callback`` every this many episodes of the run
                (default 1).
            callback_timestep_frequency: Instead, call ``callback`` whenever an episode's
                length (``runner.episode_timestep[parallel]``) reaches a multiple of this;
                ``False`` then truncates running episodes and ends the run.
            evaluation_callback: ``evaluation_callback(runner) -> float`` after each
                evaluation episode (``Runner(evaluation=True)``, or every episode of an
                evaluation run): the score ``save_best_agent`` ranks by (None: the mean of the
                last ``mean_horizon`` ``evaluation_returns``). Given to a training run, it
                turns on evaluations as ``Runner(evaluation=True)`` does.
            save_best_agent: Directory where the agent is saved (``best-model``) whenever an
                evaluation scores higher than the ones before in this run; turns evaluations on.
            mean_horizon: Evaluation returns averaged into the default score.
        """
        if num_episodes is None and num_timesteps is None and num_updates is None:
            raise ConfigError("run: give num_episodes, num_timesteps and/or num_updates")
        for name, value in (("num_episodes", num_episodes), ("num_timesteps", num_timesteps)):
            check_int(f"run.{name}", value, 1, optional=True)
        if batch_agent_calls is None:
            batch_agent_calls = self.remote is None
        if self.vectorized is not None and not batch_agent_calls:
            raise ConfigError(
                f"batch_agent_calls: False is invalid for the vectorised {self.vectorized!r}; "
                "it is always stepped as one batch (leave batch_agent_calls unset)"
            )
        self._clear_statistics()
        if evaluation:  # every episode is an evaluation episode (the same list, as Tensorforce)
            self.evaluation_returns = self.episode_returns
        record, self.evaluator = evaluation_callbacks(
            self, evaluation, evaluation_callback, save_best_agent, mean_horizon
        )
        callbacks = [] if callback is None else [callback] if callable(callback) else callback
        self.hooks = RunHooks(
            list(callbacks),
            callback_episode_frequency,
            callback_timestep_frequency,
            num_updates,
            record or self.evaluator,
        )
        sync_episodes = sync_episodes or isinstance(self.vectorized, ParallelSlots)
        self.agent.reset()
        progress = Progress(num_episodes, num_timesteps, use_tqdm)
        episode = self.hooks.episode if self.hooks.episode_needed else None
        limits = (num_episodes, num_timesteps, evaluation, episode, progress, sync_episodes)
        try:
            if self.vectorized is not None:
                VectorizedLoop(self, self.vectorized, *limits).run()
            elif batch_agent_calls:
                self._loop(*limits)
            else:
                self._loop_unbatched(*limits)
        except BaseException:
            if self.remote is not None:
                self._close_environments()  # no orphan workers after an error or Ctrl-C
            raise
        finally:
            progress.close()

    def _seed_for(self, index: int) -> int | None:
        if self.seed is not None and not self._seeded:
            return self.seed + index
        return None

    def _reset(self, index: int) -> Any:
        return self.environments[index].reset(seed=self._seed_for(index))

    def _reset_all(self) -> list[Any]:
        if self.remote is None:
            states = [self._reset(i) for i in range(len(self.environments))]
        else:
            for i, env in enumerate(self.environments):
                env.send_reset(self._seed_for(i))
            states = [env.receive()[1] for env in self.environments]
        self._seeded = True
        return states

    def _loop(
        self,
        num_episodes: int | None,
        num_timesteps: int | None,
        evaluation: bool,
        callback: Callable[[Runner, int], bool] | None,
        progress: Progress,
        sync_episodes: bool = False,
    ) -> None:
        count = len(self.environments)
        states = self._reset_all()
        active = np.ones(count, dtype=bool)
        episode = EpisodeStats(count)
        self.episode_timestep = episode.lengths
        episodes_started, steps, stop, waiting = count, 0, False, []
        slots = np.flatnonzero(active)  # recomputed only when `active` changes
        hooks = self.hooks
        while len(slots):
            steps += len(slots)
            truncate = (num_timesteps is not None and steps >= num_timesteps) or hooks.halt
            rewards, terminals = self._step(states, slots, evaluation, truncate)
            self.timesteps += len(slots)  # before the episode callbacks, so they see this step
            episode.add(None if len(slots) == count else slots, rewards)
            if hooks.steps_needed:
                hooks.step(self, slots, episode.lengths)
            stop = stop or truncate or hooks.halt
            ended = slots[terminals > 0].tolist()
            for i in ended:
                self._finish_episode(*episode.finish(i))
                progress.episode(self.episode_returns[-1])
                stop = stop or (callback is not None and callback(self, int(i)) is False)
                if stop or (num_episodes is not None and episodes_started >= num_episodes):
                    active[i] = False
                elif sync_episodes:
                    active[i] = False
                    waiting.append(i)
                    episodes_started += 1
                else:
                    episodes_started += 1
                    states[i] = self._reset(i)
            if waiting and not stop and not active.any():
                for i in waiting:
                    states[i] = self._reset(i)
                active[waiting] = True
                waiting = []
            progress.step(len(slots))
            if ended:  # only an ended episode changes `active`
                slots = np.flatnonzero(active)

    def _step(
        self, states: list[Any], slots: np.ndarray, evaluation: bool, truncate: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """One batched act, one execute per environment, one batched observe."""
        batch = stack_states([states[i] for i in slots])
        if evaluation:
            actions = self.agent.act(batch, parallel=slots, independent=True, deterministic=True)
        else:
            actions = self.agent.act(batch, parallel=slots)
        rewards = np.empty(len(slots), dtype=np.float32)
        terminals = np.empty(len(slots), dtype=np.int64)
        indices, environments = slots.tolist(), self.environments
        if self.remote is None:
            rows = split_actions(actions, len(indices))
            for row, (i, action) in enumerate(zip(indices, rows, strict=True)):
                states[i], terminals[row], rewards[row] = environments[i].execute(action)
        else:  # start every remote step, then collect: the environments step concurrently
            for i, action in zip(indices, split_actions(actions, len(indices)), strict=True):
                environments[i].send_execute(action)
            for row, i in enumerate(indices):
                states[i], terminals[row], rewards[row] = environments[i].receive()[1]
        if truncate:
            terminals[terminals == 0] = 2  # budget spent: truncate running episodes
        if not evaluation:
            nexts = stack_states([states[i] for i in slots])
            if self.agent.observe(rewards, terminals, parallel=slots, next_states=nexts):
                self.updates += 1
        return rewards, terminals

    def _loop_unbatched(
        self,
        num_episodes: int | None,
        num_timesteps: int | None,
        evaluation: bool,
        callback: Callable[[Runner, int], bool] | None,
        progress: Progress,
        sync_episodes: bool = False,
    ) -> None:
        """Serve environments one at a time, as they become ready (act/observe per slot)."""
        loop = _Unbatched(self, num_episodes, num_timesteps, evaluation, callback, progress)
        loop.sync = sync_episodes
        loop.run()

    def _finish_episode(self, episode_return: float, length: int, seconds: float) -> None:
        self.episode_returns.append(episode_return)
        self.episode_timesteps.append(length)
        self.episode_seconds.append(seconds)
        self.episodes += 1

    def evaluate(
        self, num_episodes: int = 20, deterministic: bool = True, seed: int | None = None
    ) -> dict[str, float]:
        """Mean and std of returns over ``num_episodes`` independent episodes (no learning).

        Episode ``i`` resets with seed ``seed + i`` (default: the runner's seed + 10,000).
        """
        from forceexp.execution.evaluation import evaluate

        if isinstance(self.vectorized, ParallelSlots) and self.vectorized.actors:
            raise ConfigError(
                f"evaluate: {self.vectorized!r} is multi-actor; its actors share one episode, "
                "so it cannot play single-episode evaluations"
            )
        env_spec = self._evaluation_environment or self._env_spec
        if env_spec is None:  # socket client without a local spec: evaluate on the first server
            env_spec = self.environments[0]
        environment = create(env_spec, max_episode_timesteps=self._max_episode_timesteps)
        try:
            if seed is None and self.seed is not None:
                seed = self.seed + 10_000
            return evaluate(self.agent, environment, num_episodes, deterministic, seed)
        finally:
            wrapped = getattr(environment, "environment", None)  # None for vectorised ones
            if environment is not env_spec and wrapped is not env_spec:
                environment.close()

    def close(self) -> None:
        """Close the environments (stopping worker processes), and the agent if owned."""
        self._close_environments()
        if self._owns_agent:
            self.agent.close()

    def _close_environments(self) -> None:
        close_all(self.environments)

    def handles(self) -> list[Any]:
        """Asynchronous handles of the environments (remote ones, or local adapters)."""
        if self.remote is None:
            return [LocalHandle(env) for env in self.environments]
        return list(self.environments)

    def wait_ready(self, handles: list[Any], indices: set[int]) -> list[int]:
        """Indices (of ``indices``) whose environments have an answer waiting."""
        if self.remote is None or self.blocking:
            return sorted(indices)
        if self.remote == "ray":
            from forceexp.environments.ray_remote import wait_ready

            return wait_ready(handles, indices, READY_TIMEOUT)
        objects = {handles[i].fileno(): i for i in indices}
        ready = connection.wait(list(objects), timeout=READY_TIMEOUT)
        if not ready:
            raise RemoteEnvironmentError(
                f"environments {sorted(indices)}: none answered within {READY_TIMEOUT} s"
            )
        return sorted(objects[fd] for fd in ready)
