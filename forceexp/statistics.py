"""Aggregate statistics over seeds and tasks: IQM, stratified bootstrap CIs, profiles, P(X > Y).

The measures Agarwal et al. (2021, "Deep RL at the edge of the statistical precipice") showed
that mean ± std over a few seeds misreports, as the ``rliable`` library computes them. rliable
itself is not used: its ``arch`` dependency does not import with pandas 3 (checked with
rliable 1.2.0, arch 7.2.0, pandas 3.1.1), so this module implements the four measures directly
with NumPy. Scores are arrays ``(runs, tasks)``: one row per seed, one column per environment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from forceexp.errors import ConfigError, message


class Interval(NamedTuple):
    """A point estimate with a percentile confidence interval."""

    value: float
    low: float
    high: float


def _scores(scores: np.ndarray, path: str) -> np.ndarray:
    """``scores`` as a float array ``(runs, tasks)`` (a 1-D array is one task)."""
    array = np.asarray(scores, dtype=float)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ConfigError(message(path, array.shape, "scores of shape (runs, tasks), runs >= 1"))
    return array


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of all scores (25% cut from each end).

    As ``scipy.stats.trim_mean(scores, 0.25, axis=None)``, which rliable's ``aggregate_iqm``
    calls: ``int(0.25 * n)`` scores are cut from each end of the sorted, flattened array.
    """
    flat = np.sort(_scores(scores, "iqm.scores").reshape(-1))
    cut = int(0.25 * len(flat))
    return float(flat[cut : len(flat) - cut].mean())


def stratified_bootstrap(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float] = iqm,
    repetitions: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """``statistic(scores)`` with a percentile CI from a stratified bootstrap.

    Each repetition resamples the runs of every task (column) with replacement, independently
    per task, so every task keeps its number of runs (rliable's ``StratifiedBootstrap``).

    Args:
        scores: ``(runs, tasks)``.
        statistic: Maps a ``(runs, tasks)`` array to a number.
        repetitions: Bootstrap resamples, >= 1.
        confidence: Two-sided coverage in (0, 1).
        seed: Seed of the resampling generator.
    """
    array = _scores(scores, "stratified_bootstrap.scores")
    if not 0 < confidence < 1:
        raise ConfigError(message("stratified_bootstrap.confidence", confidence, "in (0, 1)"))
    rng = np.random.default_rng(seed)
    runs, tasks = array.shape
    columns = np.arange(tasks)
    values = np.empty(repetitions)
    for i in range(repetitions):
        rows = rng.integers(runs, size=(runs, tasks))
        values[i] = statistic(array[rows, columns])
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(statistic(array)), float(low), float(high))


def performance_profile(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Run-score distribution: for each threshold, the fraction of runs scoring above it.

    The fraction is taken per task and averaged over tasks (rliable's run-score profile), so a
    task with more runs does not weigh more. Returns an array shaped like ``thresholds``.
    """
    array = _scores(scores, "performance_profile.scores")
    taus = np.asarray(thresholds, dtype=float)
    above = array[None, :, :] > taus.reshape(-1, 1, 1)
    return above.mean(1).mean(1).reshape(taus.shape)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): the chance a run of X beats a run of Y on a random task (ties count half).

    Per task, the Mann-Whitney U statistic over all run pairs divided by their number; the
    mean over tasks. ``x`` ``(runs_x, tasks)`` and ``y`` ``(runs_y, tasks)`` share the tasks.
    """
    a, b = _scores(x, "probability_of_improvement.x"), _scores(y, "probability_of_improvement.y")
    if a.shape[1] != b.shape[1]:
        raise ConfigError(
            f"probability_of_improvement: x has {a.shape[1]} tasks, y has {b.shape[1]}"
        )
    pairs = a[:, None, :] - b[None, :, :]  # (runs_x, runs_y, tasks)
    wins = (pairs > 0).mean((0, 1)) + 0.5 * (pairs == 0).mean((0, 1))
    return float(wins.mean())


def normalized(scores: np.ndarray, low: float, high: float) -> np.ndarray:
    """Scores mapped so ``low`` (e.g. a random policy) is 0 and ``high`` (a reference) is 1."""
    if high == low:
        raise ConfigError(message("normalized.high", high, f"a value other than low={low}"))
    return (np.asarray(scores, dtype=float) - low) / (high - low)
