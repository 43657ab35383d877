"""Hyperparameter schedules as functions of training progress."""

from __future__ import annotations

from typing import Literal

from forceexp.errors import ConfigError

ScheduleName = Literal["constant", "linear"]
SCHEDULES = ("constant", "linear")


def check_schedule(path: str, name: str, horizon: int | None) -> None:
    """Validate a schedule name and that a decaying schedule knows its horizon."""
    if name not in SCHEDULES:
        raise ConfigError(f"{path}: unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    if name != "constant" and (horizon is None or horizon < 1):
        raise ConfigError(
            f"{path}: schedule {name!r} needs schedule_timesteps >= 1 (got {horizon!r}); "
            "set schedule_timesteps to the training budget in timesteps"
        )


def scheduled(value: float, name: str, timesteps: int, horizon: int | None) -> float:
    """Value of ``value`` under schedule ``name`` after ``timesteps`` of ``horizon``.

    ``linear`` decays to 0 at the horizon (Stable-Baselines3's ``progress_remaining``).
    """
    if name == "constant" or horizon is None:
        return value
    return value * max(0.0, 1.0 - timesteps / horizon)
