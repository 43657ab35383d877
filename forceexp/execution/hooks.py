"""What one ``Runner.run`` calls besides act/execute/observe: callbacks, update budget, evaluations.

Tensorforce's ``Runner.run`` schedule: user callbacks every ``callback_episode_frequency``
episodes of the run (default: every episode) or, instead, after every
``callback_timestep_frequency``-th timestep of each episode; ``num_updates`` ends the run after
that many agent updates; evaluations (``Runner(evaluation=True)``, ``evaluation_callback``,
``save_best_agent``) run through ``PeriodicEvaluation``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from forceexp.errors import ConfigError, check_int
from forceexp.execution.milestones import PeriodicEvaluation

Callback = Callable[[Any, int], Any]


class RunHooks:
    """The callbacks and stop conditions of one run, called by the runner loops.

    ``episode(runner, parallel)`` is the loops' episode callback (False: start no new
    episodes). ``step(slots, lengths)`` runs after each step when ``steps_needed``; it sets
    ``halt`` (a timestep callback returned False, or ``num_updates`` updates happened), after
    which the loops truncate every running episode (terminal 2) at the next step and stop.

    Args:
        callbacks: ``callback(runner, parallel)`` functions; a False result stops the run.
        episode_frequency: Episodes of this run between episode callbacks (None: 1, unless
            ``timestep_frequency`` is given).
        timestep_frequency: Call the callbacks when an episode's length is a multiple of this.
        num_updates: Agent updates after which the run ends (None: no limit).
        evaluator: Called after every episode first (evaluations during training).
    """

    def __init__(
        self,
        callbacks: Sequence[Callback],
        episode_frequency: int | None = None,
        timestep_frequency: int | None = None,
        num_updates: int | None = None,
        evaluator: Callback | None = None,
    ) -> None:
        check_int("run.callback_episode_frequency", episode_frequency, 1, optional=True)
        check_int("run.callback_timestep_frequency", timestep_frequency, 1, optional=True)
        check_int("run.num_updates", num_updates, 1, optional=True)
        if episode_frequency is not None and timestep_frequency is not None:
            raise ConfigError(
                "run: give callback_episode_frequency or callback_timestep_frequency, not both"
            )
        if episode_frequency is None and timestep_frequency is None:
            episode_frequency = 1
        self.callbacks = list(callbacks)
        self.episode_frequency, self.timestep_frequency = episode_frequency, timestep_frequency
        self.num_updates, self.evaluator = num_updates, evaluator
        self.episodes = 0
        self.halt = False
        #: whether ``step`` has anything to do (the loops skip it otherwise)
        self.steps_needed = num_updates is not None or bool(timestep_frequency and callbacks)
        #: whether ``episode`` has anything to do (the loops then record episodes in bulk)
        self.episode_needed = evaluator is not None or bool(episode_frequency and callbacks)

    def _call(self, runner: Any, parallel: int) -> bool:
        """Call every callback (all of them, as Tensorforce does); False if any says stop."""
        return all([callback(runner, parallel) is not False for callback in self.callbacks])

    def episode(self, runner: Any, parallel: int) -> bool:
        """After each finished episode: evaluations, then the callbacks when due."""
        go = self.evaluator is None or self.evaluator(runner, parallel) is not False
        self.episodes += 1
        frequency = self.episode_frequency
        if frequency is not None and self.callbacks and self.episodes % frequency == 0:
            go = self._call(runner, parallel) and go
        return go

    def step(self, runner: Any, slots: Any, lengths: np.ndarray) -> None:
        """After each step of ``slots`` (episode lengths ``lengths``, per slot): timestep hooks."""
        if self.num_updates is not None and runner.updates >= self.num_updates:
            self.halt = True
        frequency = self.timestep_frequency
        if frequency is None or not self.callbacks:
            return
        slots = np.atleast_1d(slots)
        for index in slots[lengths[slots] % frequency == 0].tolist():
            if not self._call(runner, int(index)):
                self.halt = True


def evaluation_callbacks(
    runner: Any,
    evaluation_run: bool,
    evaluation_callback: Callable[[Any], Any] | None,
    save_best_agent: str | None,
    mean_horizon: int,
) -> tuple[Callback | None, PeriodicEvaluation | None]:
    """The episode callback (evaluation run) or ``PeriodicEvaluation`` (training) for a run.

    In an evaluation run every episode counts as an evaluation (``runner.evaluation_returns``
    is ``runner.episode_returns``) and ``evaluation_callback(runner)`` is called after each.
    In a training run with ``Runner(evaluation=True)``, ``evaluation_callback`` or
    ``save_best_agent``, one deterministic evaluation episode is played after every
    ``num_parallel`` training episodes (Tensorforce steps its evaluation environment beside the
    training ones, which gives the same rate for episodes of equal length).
    """
    check_int("run.mean_horizon", mean_horizon, 1)
    if evaluation_run:
        if save_best_agent is not None:
            raise ConfigError(
                "run.save_best_agent: the agent does not learn in an evaluation run; give it to "
                "a training run (Runner(evaluation=True) evaluates beside training)"
            )
        if evaluation_callback is None:
            return None, None

        def record(runner: Any, parallel: int) -> bool:
            evaluation_callback(runner)
            return True

        return record, None
    if not (runner.evaluation or evaluation_callback is not None or save_best_agent is not None):
        return None, None

    def score(runner: Any) -> float:
        value = None if evaluation_callback is None else evaluation_callback(runner)
        if value is None:
            return float(np.mean(runner.evaluation_returns[-mean_horizon:]))
        return float(value)

    periodic = PeriodicEvaluation(
        runner.num_parallel, num_episodes=1, unit="episodes", score=score, save_best=save_best_agent
    )
    return None, periodic
