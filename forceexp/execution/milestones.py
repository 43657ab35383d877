"""Runner callbacks (time-to-solve, periodic evaluation with best weights) and why a run stopped."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from forceexp import tags
from forceexp.errors import ConfigError, message
from forceexp.observers.base import notify_metrics

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

    @property
    def stopped(self) -> str | None:
        """Why this callback stopped the run, or None if it did not."""
        if not self.stop or self.timesteps is None:
            return None
        return (
            f"solved: the mean return of the last {self.window} episodes reached "
            f"{self.threshold:g} at {self.timesteps} timesteps"
        )


class PeriodicEvaluation:
    """Runner callback: a deterministic evaluation every ``frequency`` timesteps; the best weights.

    After the first episode that ends ``frequency`` timesteps past the previous evaluation, the
    agent plays ``num_episodes`` independent episodes on a separate environment (episode seeds
    start at ``seed``, apart from the final evaluation's). ``history`` keeps
    ``(timesteps, mean return)``; with ``keep_best`` the weights of the best evaluation are kept
    (in memory) and ``finish`` (after training: one more evaluation of the final weights) puts
    them back if they beat the final ones — SB3's ``EvalCallback`` best model; with
    ``save_best`` they are also saved to that directory (``best-model``) whenever the score
    improves, as Tensorforce's ``save_best_agent``. ``stop_return`` ends the run once an
    evaluation reaches it. Each evaluation's mean return is appended to
    ``runner.evaluation_returns``.

    Args:
        frequency: Timesteps (or episodes, see ``unit``) between evaluations (an int >= 1).
        num_episodes: Episodes per evaluation.
        keep_best: Remember the best-evaluated weights.
        stop_return: Stop training once an evaluation's mean return reaches this (None: never).
        seed: Seed of the first evaluation episode (None: unseeded).
        unit: ``'timesteps'`` or ``'episodes'``: what ``frequency`` counts (runner totals).
        score: ``score(runner) -> float`` ranks evaluations (Tensorforce's
            ``evaluation_callback``); None, or a None result: the evaluation's mean return.
        save_best: Directory to save the agent to whenever the score improves (None: no files).
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
        unit: Literal["timesteps", "episodes"] = "timesteps",
        score: Callable[[Any], float | None] | None = None,
        save_best: str | None = None,
        on_evaluation: Callable[[int, int, float], bool] | None = None,
    ) -> None:
        for name, value in (("frequency", frequency), ("num_episodes", num_episodes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(message(f"evaluation.{name}", value, "an int >= 1"))
        if stop_return is not None and not isinstance(stop_return, int | float):
            raise ConfigError(message("evaluation.stop_return", stop_return, "a number or null"))
        if unit not in ("timesteps", "episodes"):
            raise ConfigError(message("evaluation.unit", unit, "'timesteps' or 'episodes'"))
        self.frequency, self.num_episodes = frequency, num_episodes
        self.keep_best, self.stop_return, self.seed = keep_best, stop_return, seed
        self.unit, self.score, self.save_best = unit, score, save_best
        self.history: list[tuple[int, float]] = []
        self.best: tuple[int, float] | None = None
        self._best_state: dict[str, Any] | None = None
        self._next = frequency
        self.restored = False  # whether ``finish`` put earlier weights back
        self.on_evaluation = on_evaluation
        self.stopped: str | None = None  # why this callback stopped the run
        self.offset = (0, 0)  # timesteps and episodes before this run (a resumed run's)

    def resume(
        self,
        timesteps: int,
        episodes: int,
        history: list[tuple[int, float]],
        best: tuple[int, float] | None,
        due: int,
        best_state: dict[str, Any] | None,
    ) -> None:
        """Continue an interrupted run's evaluations: its counts so far, what it evaluated.

        ``due`` is when the next evaluation falls (in ``unit``, counted over the whole run);
        ``best_state`` the best-evaluated weights (None: not kept, ``finish`` keeps the final).
        """
        self.offset = (timesteps, episodes)
        self.history, self.best, self._next = list(history), best, due
        self._best_state = best_state if self.keep_best else None

    def __call__(self, runner: Any, parallel: int) -> bool:
        """Evaluate when due; False (stop the run) once ``stop_return`` is reached."""
        if self._count(runner) < self._next:
            return True
        mean = self._evaluate(runner)
        if (
            self.on_evaluation is not None
            and self.on_evaluation(len(self.history), self.timesteps(runner), mean) is False
        ):
            at = self.timesteps(runner)
            self.stopped = f"stopped by on_evaluation at {at} timesteps (pruned)"
        elif self.stop_return is not None and mean >= self.stop_return:
            self.stopped = (
                f"early stop: the evaluation at {self.timesteps(runner)} timesteps returned "
                f"{mean:.2f} >= evaluation.stop_return {self.stop_return:g}"
            )
        return self.stopped is None

    def finish(self, runner: Any) -> bool:
        """Evaluate the final weights too, then restore the best ones if ``keep_best``.

        Returns whether weights other than the final ones were restored.
        """
        if not self.history or self.history[-1][0] != self.timesteps(runner):
            self._evaluate(runner)
        if not self.keep_best or self._best_state is None:
            return False
        if self.best is not None and self.best[0] == self.timesteps(runner):
            return False  # the final weights are the best
        runner.agent.load_state_dict(self._best_state)
        self.restored = True
        return True

    @property
    def due(self) -> int:
        """When the next evaluation falls (in ``unit``, counted over the whole run)."""
        return int(self._next)

    def timesteps(self, runner: Any) -> int:
        """Timesteps of the whole run (a resumed run's earlier ones included)."""
        return self.offset[0] + runner.timesteps

    def _count(self, runner: Any) -> int:
        if self.unit == "episodes":
            return self.offset[1] + runner.episodes
        return self.timesteps(runner)

    def _evaluate(self, runner: Any) -> float:
        """One evaluation: record and log it; remember (and save) the weights if they score best."""
        self._next = self._count(runner) + self.frequency
        evaluation = runner.evaluate(self.num_episodes, seed=self.seed)
        mean = evaluation["return_mean"]
        metrics = {tags.EVAL_RETURN: mean, tags.EVAL_RETURN_STD: evaluation["return_std"]}
        notify_metrics(runner.agent, metrics)  # TensorBoard and MLflow
        timesteps = self.timesteps(runner)
        self.history.append((timesteps, mean))
        runner.evaluation_returns.append(mean)
        log.info("Evaluation at %d timesteps: mean return %.2f", timesteps, mean)
        score = None if self.score is None else self.score(runner)
        score = mean if score is None else float(score)
        # A tie goes to the later weights: as good on this evaluation and trained on more data.
        if self.best is None or score >= self.best[1]:
            self.best = (timesteps, score)
            if self.keep_best:
                self._best_state = copy.deepcopy(runner.agent.state_dict())
            if self.save_best is not None:
                runner.agent.save(self.save_best, filename="best-model")
        return mean


def chain(*callbacks: Callable[[Any, int], bool] | None) -> Callable[[Any, int], bool] | None:
    """One runner callback calling each given one (None skipped); False if any says stop."""
    active = [callback for callback in callbacks if callback is not None]
    if len(active) <= 1:
        return active[0] if active else None
    return lambda runner, parallel: all([c(runner, parallel) is not False for c in active])


def stop_reason(
    runner: Any,
    num_timesteps: int | None,
    num_episodes: int | None,
    *callbacks: Any,
    before: int = 0,
) -> str:
    """Why ``runner.run`` ended: the first callback that stopped it, else the budget.

    ``before``: timesteps of a resumed run's earlier segments, so its budget is named as the
    whole run's (``num_timesteps`` counts this segment's).
    """
    for callback in callbacks:
        reason = getattr(callback, "stopped", None)
        if reason:
            return reason
    if num_timesteps is not None and runner.timesteps >= num_timesteps:
        return f"budget: {num_timesteps + before} timesteps"
    if num_episodes is not None and runner.episodes >= num_episodes:
        return f"budget: {num_episodes} episodes"
    return "the runner ended"
