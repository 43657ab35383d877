"""Per-episode statistics and the progress bar of a runner."""

from __future__ import annotations

import datetime
import logging
import sys
import time
from collections import deque

import numpy as np

log = logging.getLogger(__name__)


class EpisodeStats:
    """Running return, length and start time of each environment's current episode."""

    def __init__(self, count: int) -> None:
        self.returns = np.zeros(count)
        self.lengths = np.zeros(count, dtype=np.int64)
        self.starts = np.full(count, time.perf_counter())

    def add(self, slots: np.ndarray | None, rewards: np.ndarray) -> None:
        """Add one step's rewards ``(B,)`` to the episodes of ``slots`` (None: every slot)."""
        if slots is None:
            np.add(self.returns, rewards, out=self.returns)
            self.lengths += 1
            return
        self.returns[slots] += rewards
        self.lengths[slots] += 1

    def finish(self, index: int) -> tuple[float, int, float]:
        """End slot ``index``'s episode; return its return, length and seconds."""
        returns, lengths, seconds = self.finish_many(np.array([index]))
        return float(returns[0]), int(lengths[0]), float(seconds[0])

    def finish_many(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """End the episodes of slots ``indices``; return their returns, lengths and seconds."""
        now = time.perf_counter()
        out = (self.returns[indices], self.lengths[indices], now - self.starts[indices])
        self.returns[indices], self.lengths[indices], self.starts[indices] = 0.0, 0, now
        return out


class Progress:
    """Training progress: a tqdm bar on a terminal, else a log line every ``interval`` seconds.

    The bar counts timesteps (or episodes, for an episode budget) and shows one steps/s figure
    and the rolling-100 mean return; when the run stops short of its budget, ``close`` shrinks
    the total to the real stop, and the bar stays on screen. Without a terminal (a sweep, a CI
    log) an INFO line ``timesteps 12288/100000 (12%) | return 45.3 | 2040 steps/s | ETA 0:00:44``
    is logged every ``interval`` seconds instead.

    Args:
        num_episodes: Episode budget (counted when ``num_timesteps`` is None).
        num_timesteps: Timestep budget.
        enabled: Show progress at all.
        interval: Seconds between log lines without a terminal (default ``INTERVAL``).
        terminal: Whether stderr is a terminal (default: ask it).
    """

    INTERVAL = 10.0
    FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"

    def __init__(
        self,
        num_episodes: int | None,
        num_timesteps: int | None,
        enabled: bool,
        interval: float | None = None,
        terminal: bool | None = None,
    ) -> None:
        self.bar = None
        self.by_episodes = num_timesteps is None
        self.total = num_episodes if self.by_episodes else num_timesteps
        self.returns: deque[float] = deque(maxlen=100)  # for the rolling mean
        self.start = time.perf_counter()
        self.steps = 0
        self.count = 0  # episodes finished
        self.interval = self.INTERVAL if interval is None else interval
        self.next_log = self.start + self.interval
        self._mark = (self.start, 0)  # (time, done) at the last log line: the ETA's recent rate
        self.logging = enabled  # off a terminal; the bar replaces it on one
        if enabled and (sys.stderr.isatty() if terminal is None else terminal):
            from tqdm import tqdm

            unit = "ep" if self.by_episodes else "step"
            self.bar = tqdm(total=self.total, unit=unit, bar_format=self.FORMAT, leave=True)
            self.logging = False

    def episode(self, episode_return: float) -> None:
        """Count a finished episode and refresh the bar's mean return and steps/s."""
        self.episodes([episode_return])

    def episodes(self, episode_returns: list[float]) -> None:
        """Count finished episodes (in order) and refresh the bar once."""
        self.returns.extend(episode_returns)
        self.count += len(episode_returns)
        if self.bar is not None:
            if self.by_episodes:
                self.bar.update(len(episode_returns))
            mean = float(np.mean(self.returns))
            self.bar.set_postfix(ret=f"{mean:.1f}", sps=f"{self.rate():.0f}", refresh=False)

    def step(self, count: int) -> None:
        """Count ``count`` timesteps."""
        self.steps += count
        if self.bar is not None and not self.by_episodes:
            self.bar.update(count)
        elif self.logging and time.perf_counter() >= self.next_log:
            self.next_log = time.perf_counter() + self.interval
            log.info(self.line())

    def rate(self) -> float:
        """Timesteps per second since the start."""
        return self.steps / max(time.perf_counter() - self.start, 1e-9)

    def line(self) -> str:
        """The log line: done/total, rolling mean return, steps/s, estimated time left.

        steps/s is the whole run's (the ``charts/SPS`` figure); the ETA extrapolates the rate
        since the previous line instead, because the rate changes during a run (a replay
        agent's random warm-up steps are many times faster than its training steps).
        """
        done, unit = (self.count, "episodes") if self.by_episodes else (self.steps, "timesteps")
        mean = f"{np.mean(self.returns):.1f}" if self.returns else "-"
        text = f"{unit} {done}/{self.total} ({100 * done / self.total:.0f}%) | return {mean}"
        text += f" | {self.rate():.0f} steps/s"
        now, (then, before) = time.perf_counter(), self._mark
        if done <= before or now <= then:  # nothing new since the last line: the whole run
            then, before = self.start, 0
        self._mark = (now, done)
        if 0 < done < self.total and now > then:
            left = (now - then) * (self.total - done) / (done - before)
            text += f" | ETA {datetime.timedelta(seconds=round(left))}"
        return text

    def close(self) -> None:
        """Close the bar, its total shrunk to the real stop when the run ended early."""
        if self.bar is not None:
            if self.bar.n < self.bar.total:
                self.bar.total = self.bar.n
            self.bar.close()  # leave=True: drawn once more, at the final count
