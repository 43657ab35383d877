"""Unbatched runner loop: environments served one at a time, as their answers arrive."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


class Unbatched:
    """One ``run()`` of the unbatched mode: per-slot ``act``/``observe`` with ``parallel=i``.

    Args:
        runner: The ``Runner`` (environments, agent, statistics).
        num_episodes: Episodes to complete, or None.
        num_timesteps: Steps to take (then running episodes are truncated), or None.
        evaluation: Act deterministically and independently, without learning.
        callback: ``callback(runner, parallel)`` after each episode; ``False`` stops.
        progress: The runner's progress bar.
    """

    def __init__(
        self,
        runner: Any,
        num_episodes: int | None,
        num_timesteps: int | None,
        evaluation: bool,
        callback: Callable[[Any, int], bool] | None,
        progress: Any,
    ) -> None:
        self.runner, self.agent = runner, runner.agent
        self.num_episodes, self.num_timesteps = num_episodes, num_timesteps
        self.evaluation, self.callback, self.progress = evaluation, callback, progress
        self.sync = False
        count = len(runner.environments)
        self.handles = runner.handles()
        self.returns = np.zeros(count)
        self.lengths = np.zeros(count, dtype=np.int64)
        self.starts = np.full(count, time.perf_counter())
        runner.episode_timestep = self.lengths
        self.running: set[int] = set()
        self.waiting: list[int] = []
        self.started, self.steps, self.stop = count, 0, False

    def run(self) -> None:
        """Reset every environment, then serve answers until the budget is spent."""
        for i, handle in enumerate(self.handles):
            handle.send_reset(self.runner._seed_for(i))
            self.running.add(i)
        self.runner._seeded = True
        while self.running:
            for i in self.runner.wait_ready(self.handles, self.running):
                kind, result = self.handles[i].receive()
                state = result if kind == "reset" else self._observe(i, *result)
                if state is not None:
                    self._act(i, state)
            if self.waiting and not self.running and not self.stop:
                for i in self.waiting:
                    self.handles[i].send_reset(None)
                    self.running.add(i)
                self.waiting = []

    def _act(self, index: int, state: Any) -> None:
        if self.evaluation:
            action = self.agent.act(state, parallel=index, independent=True, deterministic=True)
        else:
            action = self.agent.act(state, parallel=index)
        self.handles[index].send_execute(action)

    def _observe(self, index: int, state: Any, terminal: int, reward: float) -> Any:
        """Observe one step; return the state to act on next, or None if the slot pauses."""
        self.steps += 1
        hooks = self.runner.hooks
        if (self.num_timesteps is not None and self.steps >= self.num_timesteps) or hooks.halt:
            self.stop = True
        if self.stop and terminal == 0:
            terminal = 2  # budget spent: truncate the running episode
        if not self.evaluation and self.agent.observe(
            reward, terminal, parallel=index, next_states=state
        ):
            self.runner.updates += 1
        self.returns[index] += reward
        self.lengths[index] += 1
        self.runner.timesteps += 1
        self.progress.step(1)
        if hooks.steps_needed:
            hooks.step(self.runner, index, self.lengths)
            self.stop = self.stop or hooks.halt
        if not terminal:
            return state
        self._finish(index)
        if self.stop or (self.num_episodes is not None and self.started >= self.num_episodes):
            self.running.discard(index)
            return None
        self.started += 1
        if self.sync:
            self.running.discard(index)
            self.waiting.append(index)
        else:
            self.handles[index].send_reset(None)
        return None

    def _finish(self, index: int) -> None:
        now = time.perf_counter()
        self.runner._finish_episode(
            float(self.returns[index]), int(self.lengths[index]), now - self.starts[index]
        )
        self.returns[index], self.lengths[index], self.starts[index] = 0.0, 0, now
        self.progress.episode(self.runner.episode_returns[-1])
        if self.callback is not None and self.callback(self.runner, index) is False:
            self.stop = True
