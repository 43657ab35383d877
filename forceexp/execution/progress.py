"""Per-episode statistics and the progress bar of a runner."""

from __future__ import annotations

import time
from collections import deque

import numpy as np


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
    """A tqdm bar (episodes or timesteps, mean return, steps/s) when on a terminal."""

    def __init__(self, num_episodes: int | None, num_timesteps: int | None, enabled: bool) -> None:
        self.bar = None
        self.by_episodes = num_timesteps is None
        self.returns: deque[float] = deque(maxlen=100)  # for the rolling mean
        self.start = time.perf_counter()
        self.steps = 0
        if enabled:
            from tqdm import tqdm

            total = num_episodes if self.by_episodes else num_timesteps
            self.bar = tqdm(total=total, unit="ep" if self.by_episodes else "step", leave=False)

    def episode(self, episode_return: float) -> None:
        """Count a finished episode and refresh the bar's mean return and steps/s."""
        self.episodes([episode_return])

    def episodes(self, episode_returns: list[float]) -> None:
        """Count finished episodes (in order) and refresh the bar once."""
        self.returns.extend(episode_returns)
        if self.bar is not None:
            if self.by_episodes:
                self.bar.update(len(episode_returns))
            rate = self.steps / max(time.perf_counter() - self.start, 1e-9)
            mean = float(np.mean(self.returns))
            self.bar.set_postfix(ret=f"{mean:.1f}", sps=f"{rate:.0f}", refresh=False)

    def step(self, count: int) -> None:
        """Count ``count`` timesteps."""
        self.steps += count
        if self.bar is not None and not self.by_episodes:
            self.bar.update(count)

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
