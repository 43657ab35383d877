"""ReturnThreshold: when did training first reach a rolling-mean episode return (time-to-solve)."""

from __future__ import annotations

import time
from typing import Any

from forceexp.errors import ConfigError, message


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
