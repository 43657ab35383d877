"""Runner callbacks: time-to-solve (``ReturnThreshold``) and periodic evaluation (best weights)."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any

from forceexp.errors import ConfigError, message

log = logging.getLogger(__name__)


class ReturnThreshold:
    """Runner callback: first time the mean of the last ``window`` returns reaches ``threshold``.

    Time-to-solve is the usual way RL frameworks are compared (e.g. RL-Zoo's CartPole figure is
    the time until the rolling-100 training return reaches 475). Pass it as
    ``runner.run(callback=...)``; with ``stop=True`` the run ends there.

    Args:
        threshold: Return to reach.
        window: Number of most recent episodes averaged.
        stop: End the run once reached.
    """

    def __init__(self, threshold: float, window: int = 100, stop: bool = False) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ConfigError(message("solve_return", threshold, "a number, 'auto' or null"))
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError(message("solve window", window, "an int >= 1"))
        self.threshold, self.window, self.stop = float(threshold), window, stop
        self.start = time.perf_counter()
        self.timesteps: int | None = None
        self.seconds: float | None = None

    def __call__(self, runner: Any, parallel: int) -> bool:
        """Check after each finished episode; False (stop the run) once reached with ``stop``."""
        if self.timesteps is None:
            returns = runner.episode_returns
            if len(returns) >= self.window:
                recent = returns[-self.window :]
                if sum(recent) / self.window >= self.threshold:
                    self.timesteps = runner.timesteps
                    self.seconds = time.perf_counter() - self.start
        return not (self.stop and self.timesteps is not None)


class PeriodicEvaluation:
    """Runner callback: a deterministic evaluation every ``frequency`` timesteps; the best weights.

    After the first episode that ends ``frequency`` timesteps past the previous evaluation, the
    agent plays ``num_episodes`` independent episodes on a separate environment (episode seeds
    start at ``seed``, apart from the final evaluation's). ``history`` keeps
    ``(timesteps, mean return)``; with ``keep_best`` the weights of the best evaluation are kept
    (in memory) and ``finish`` (after training: one more evaluation of the final weights) puts
    them back if they beat the final ones — SB3's ``EvalCallback`` best model, Tensorforce's
    ``save_best_agent``; ``stop_return`` ends the run once an evaluation reaches it.

    Args:
        frequency: Timesteps between evaluations (an int >= 1).
        num_episodes: Episodes per evaluation.
        keep_best: Remember the best-evaluated weights.
        stop_return: Stop training once an evaluation's mean return reaches this (None: never).
        seed: Seed of the first evaluation episode (None: unseeded).
        on_evaluation: Called as ``on_evaluation(index, timesteps, mean)`` after each
            evaluation (index from 1); returning False stops training (a tuner's pruning).
    """

    def __init__(
        self,
        frequency: int,
        num_episodes: int = 10,
        keep_best: bool = False,
        stop_return: float | None = None,
        seed: int | None = None,
        on_evaluation: Callable[[int, int, float], bool] | None = None,
    ) -> None:
        for name, value in (("frequency", frequency), ("num_episodes", num_episodes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(message(f"evaluation.{name}", value, "an int >= 1"))
        if stop_return is not None and not isinstance(stop_return, int | float):
            raise ConfigError(message("evaluation.stop_return", stop_return, "a number or null"))
        self.frequency, self.num_episodes = frequency, num_episodes
        self.keep_best, self.stop_return, self.seed = keep_best, stop_return, seed
        self.history: list[tuple[int, float]] = []
        self.best: tuple[int, float] | None = None
        self._best_state: dict[str, Any] | None = None
        self._next = frequency
        self.restored = False  # whether ``finish`` put earlier weights back
        self.on_evaluation = on_evaluation
        self.stopped = False  # whether ``on_evaluation`` stopped the run

    def __call__(self, runner: Any, parallel: int) -> bool:
        """Evaluate when due; False (stop the run) once ``stop_return`` is reached."""
        if runner.timesteps < self._next:
            return True
        mean = self._evaluate(runner)
        if (
            self.on_evaluation is not None
            and self.on_evaluation(len(self.history), runner.timesteps, mean) is False
        ):
            self.stopped = True
            return False
        return self.stop_return is None or mean < self.stop_return

    def finish(self, runner: Any) -> bool:
        """Evaluate the final weights too, then restore the best ones if ``keep_best``.

        Returns whether weights other than the final ones were restored.
        """
        if not self.history or self.history[-1][0] != runner.timesteps:
            self._evaluate(runner)
        if not self.keep_best or self._best_state is None:
            return False
        if self.best is not None and self.best[0] == runner.timesteps:
            return False  # the final weights are the best
        runner.agent.load_state_dict(self._best_state)
        self.restored = True
        return True

    def _evaluate(self, runner: Any) -> float:
        """One evaluation: record it, remember the weights if they are the best so far."""
        self._next = runner.timesteps + self.frequency
        mean = runner.evaluate(self.num_episodes, seed=self.seed)["return_mean"]
        self.history.append((runner.timesteps, mean))
        log.info("Evaluation at %d timesteps: mean return %.2f", runner.timesteps, mean)
        if self.best is None or mean > self.best[1]:
            self.best = (runner.timesteps, mean)
            if self.keep_best:
                self._best_state = copy.deepcopy(runner.agent.state_dict())
        return mean


def chain(*callbacks: Callable[[Any, int], bool] | None) -> Callable[[Any, int], bool] | None:
    """One runner callback calling each given one (None skipped); False if any says stop."""
    active = [callback for callback in callbacks if callback is not None]
    if len(active) <= 1:
        return active[0] if active else None
    return lambda runner, parallel: all([c(runner, parallel) is not False for c in active])
