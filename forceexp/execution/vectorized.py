"""Runner loop and evaluation for a ``VectorizedEnvironment``: one act/execute/observe per step.

The loop keeps the semantics of the batched loop of ``Runner`` (budgets, truncation with
terminal 2, callbacks, ``sync_episodes``) with NumPy bookkeeping: per step it makes one
``agent.act``, one ``env.execute``, one ``agent.observe`` and (when episodes ended) one
``env.reset_where``; finished episodes are recorded together, not one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from forceexp.agents.agent import Agent
from forceexp.environments.vectorized import VectorizedEnvironment
from forceexp.errors import ConfigError
from forceexp.execution.progress import EpisodeStats, Progress


def take(values: Any, rows: np.ndarray) -> Any:
    """Rows ``rows`` of a batched array (or of each array of a dict)."""
    if isinstance(values, dict):
        return {key: value[rows] for key, value in values.items()}
    return values[rows]


def put(full: Any, rows: np.ndarray, part: Any, size: int) -> Any:
    """A copy of ``full`` (array or dict of arrays) with rows ``rows`` replaced by ``part``.

    Without ``full`` (None), the other rows of the ``size`` rows repeat ``part``'s first row.
    """
    if isinstance(part, dict):
        return {
            key: put(None if full is None else full[key], rows, value, size)
            for key, value in part.items()
        }
    out = np.repeat(part[:1], size, axis=0) if full is None else full.copy()
    out[rows] = part
    return out


def check_size(environment: VectorizedEnvironment, specs: list[Any]) -> None:
    """Check that a runner's environment specs fit one vectorised environment.

    ``specs`` are one spec per requested slot (``num_parallel`` copies, or ``environments=``);
    they must be one spec, or ``num_environments`` copies of it.
    """
    size = environment.num_environments
    if any(spec is not specs[0] for spec in specs):
        raise ConfigError(
            f"environments: {environment!r} is vectorised; give it alone "
            "(environment=..., not a list of different environments)"
        )
    if len(specs) not in (1, size):
        raise ConfigError(
            f"num_parallel: {len(specs)} differs from num_environments={size} of the vectorised "
            f"{environment!r}; leave num_parallel unset or set it to {size}"
        )


class VectorizedLoop:
    """One ``Runner.run`` on a vectorised environment.

    Args:
        runner: The ``Runner`` (agent, statistics, seed).
        environment: The vectorised environment.
        num_episodes: Episodes to complete, or None.
        num_timesteps: Steps to take (then running episodes are truncated), or None.
        evaluation: Act deterministically and independently, without learning.
        callback: ``callback(runner, parallel)`` after each episode; ``False`` stops.
        progress: The runner's progress bar.
        sync_episodes: Start new episodes only when every sub-environment has finished.
    """

    def __init__(
        self,
        runner: Any,
        environment: VectorizedEnvironment,
        num_episodes: int | None,
        num_timesteps: int | None,
        evaluation: bool,
        callback: Callable[[Any, int], bool] | None,
        progress: Progress,
        sync_episodes: bool = False,
    ) -> None:
        self.runner, self.agent, self.env = runner, runner.agent, environment
        self.num_episodes, self.num_timesteps = num_episodes, num_timesteps
        self.evaluation, self.callback, self.progress = evaluation, callback, progress
        self.sync = sync_episodes
        count = environment.num_environments
        self.slots = np.arange(count)
        self.active = np.ones(count, dtype=bool)
        self.waiting = np.zeros(count, dtype=bool)
        self.episode = EpisodeStats(count)
        runner.episode_timestep = self.episode.lengths
        self.started, self.steps, self.stop, self.full = count, 0, False, True
        # a full batch for exactly parallel_interactions slots: the agent's default (no checks)
        self.everyone = 0 if self.agent.parallel_interactions == count else self.slots

    def run(self) -> None:
        """Reset every sub-environment, then step until the budget is spent."""
        states = self.env.reset(seed=self.runner._seed_for(0))
        self.runner._seeded = True
        actions = None
        while self.full or self.active.any():
            pending = self.env.pending  # rows whose next step is a reset step: not acted for
            full = self.full and pending is None
            if full:
                slots = self.slots
            else:
                slots = np.flatnonzero(self.active if pending is None else self.active & ~pending)
            count = len(slots)
            self.steps += count
            hooks = self.runner.hooks
            truncate = (
                self.num_timesteps is not None and self.steps >= self.num_timesteps
            ) or hooks.halt
            actions, next_states, terminals, rewards = self._step(full, slots, states, actions)
            if truncate:
                terminals[terminals == 0] = 2  # budget spent: truncate running episodes
            self.stop = self.stop or truncate
            if not self.evaluation and count:
                parallel, nexts = (
                    (self.everyone, next_states) if full else (slots, take(next_states, slots))
                )
                if self.agent.observe(rewards, terminals, parallel=parallel, next_states=nexts):
                    self.runner.updates += 1
            self.episode.add(None if full else slots, rewards)
            if hooks.steps_needed:
                hooks.step(self.runner, slots, self.episode.lengths)
                self.stop = self.stop or hooks.halt
            done = terminals > 0
            states = next_states
            if done.any():
                restart = self._finish(slots, done, full)
                if restart is not None:
                    states = self.env.reset_where(restart)
            self.runner.timesteps += count
            self.progress.step(count)

    def _step(self, full: bool, slots: np.ndarray, states: Any, actions: Any) -> tuple[Any, ...]:
        """Act for ``slots`` and step every sub-environment.

        Returns ``(actions, next_states, terminals, rewards)``, the last two for ``slots`` only.
        """
        if full:
            actions = self._act(states, self.everyone)
            next_states, terminals, rewards = self.env.execute(actions)
            return actions, next_states, terminals, rewards
        if len(slots):  # the others step on unobserved with their last actions
            actions = put(actions, slots, self._act(take(states, slots), slots), len(self.slots))
        next_states, terminals, rewards = self.env.execute(actions)
        return actions, next_states, terminals[slots], rewards[slots]

    def _act(self, states: Any, slots: Any) -> Any:
        if self.evaluation:
            return self.agent.act(states, parallel=slots, independent=True, deterministic=True)
        return self.agent.act(states, parallel=slots)

    def _finish(self, slots: np.ndarray, done: np.ndarray, full: bool) -> np.ndarray | None:
        """Record the finished episodes; return the bool ``(N,)`` mask to reset (or None).

        Updates ``active``, ``waiting``, ``started``, ``stop`` and ``full`` (all active).
        """
        finished = slots[done]
        returns, lengths, seconds = self.episode.finish_many(finished)
        allowed = 0 if self.stop else len(finished)  # the prefix that may go on
        if self.callback is None or self.stop:
            self._record(returns, lengths, seconds)
        else:  # callbacks see the statistics up to their own episode; False stops
            for k, index in enumerate(finished):
                self._record(returns[k : k + 1], lengths[k : k + 1], seconds[k : k + 1])
                if self.callback(self.runner, int(index)) is False:
                    self.stop, allowed = True, k
                    self._record(returns[k + 1 :], lengths[k + 1 :], seconds[k + 1 :])
                    break
        if self.num_episodes is not None:
            allowed = max(0, min(allowed, self.num_episodes - self.started))
        self.started += allowed
        go = finished[:allowed]
        if allowed < len(finished) or self.sync:
            self.active[finished[allowed:]] = False
            self.full = False
        if self.sync:
            self.active[go] = False
            self.waiting[go] = True
            if self.stop or self.active.any() or not self.waiting.any():
                return None
            restart, self.waiting = self.waiting, np.zeros_like(self.waiting)
            self.active[restart] = True
            self.full = bool(self.active.all())
            return restart
        if not allowed:
            return None
        if full and allowed == len(finished):
            return done  # every finished episode restarts: done is already the (N,) mask
        restart = np.zeros(len(self.active), dtype=bool)
        restart[go] = True
        return restart

    def _record(self, returns: np.ndarray, lengths: np.ndarray, seconds: np.ndarray) -> None:
        if not len(returns):
            return
        episode_returns = returns.tolist()
        self.runner.episode_returns.extend(episode_returns)
        self.runner.episode_timesteps.extend(lengths.tolist())
        self.runner.episode_seconds.extend(seconds.tolist())
        self.runner.episodes += len(episode_returns)
        self.progress.episodes(episode_returns)


def evaluate_vectorized(
    agent: Agent,
    environment: VectorizedEnvironment,
    num_episodes: int,
    deterministic: bool = True,
    seed: int | None = None,
) -> dict[str, float]:
    """Play ``num_episodes`` episodes on the N sub-environments with independent acts.

    Sub-environment ``i`` plays a fixed quota of episodes (``num_episodes / N``, the first
    ``num_episodes % N`` one more), so short episodes are not favoured; only sub-environments
    with episodes left are acted for.

    Returns:
        ``{'return_mean', 'return_std', 'length_mean', 'episodes'}``.
    """
    size = environment.num_environments
    quota = np.full(size, num_episodes // size)
    quota[: num_episodes % size] += 1
    states = environment.reset(seed=seed)
    recurrent = {
        path: np.zeros((size, *np.shape(x)), dtype=np.float32)
        for path, x in agent.initial_internals().items()
    }
    totals, steps = np.zeros(size), np.zeros(size, dtype=np.int64)
    returns: list[float] = []
    lengths: list[int] = []
    actions = None
    while (playing := quota > 0).any():
        if environment.pending is not None:  # reset steps: not acted for, not counted
            playing &= ~environment.pending
        rows = np.flatnonzero(playing)
        if len(rows):
            actions, recurrent = _act_rows(agent, states, recurrent, rows, actions, deterministic)
        states, terminals, rewards = environment.execute(actions)
        totals[playing] += rewards[playing]
        steps[playing] += 1
        done = (terminals > 0) & playing
        if done.any():
            returns.extend(totals[done].tolist())
            lengths.extend(steps[done].tolist())
            quota[done] -= 1
            totals[done], steps[done] = 0.0, 0
            for value in recurrent.values():
                value[done] = 0.0
            states = environment.reset_where(done)
    return {
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "length_mean": float(np.mean(lengths)),
        "episodes": float(num_episodes),
    }


def _act_rows(
    agent: Agent,
    states: Any,
    recurrent: dict[str, np.ndarray],
    rows: np.ndarray,
    previous: Any,
    deterministic: bool,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Independent acts for ``rows``; the other rows keep ``previous`` (or repeat row 0)."""
    size = len(next(iter(states.values())) if isinstance(states, dict) else states)
    part = rows if len(rows) < size else slice(None)
    options = {"independent": True, "deterministic": deterministic}
    slots = np.zeros(len(rows), dtype=np.int64)  # independent acts use no slot
    if recurrent:
        actions, following = agent.act(
            take(states, part), internals=take(recurrent, part), parallel=slots, **options
        )
        recurrent = put(recurrent, part, following, size)
    else:
        actions = agent.act(take(states, part), parallel=slots, **options)
    if len(rows) < size:  # the others step on unobserved
        actions = put(previous, rows, actions, size)
    return actions, recurrent
