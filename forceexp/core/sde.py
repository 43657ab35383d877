"""gSDE's resampling cadence: when each slot's exploration matrices are drawn anew."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from forceexp.core.distributions import StateDependentHead
from forceexp.errors import ConfigError, message

SDE_KEYS = ("sample_freq", "log_std_init", "full_std")


def head_options(sde: Any) -> dict[str, Any] | None:
    """The ``StateDependentHead`` options of ``agent.sde`` (all but ``sample_freq``).

    Raises:
        ConfigError: ``sde`` is not None or a dict of ``SDE_KEYS``, or ``sample_freq`` is not
            -1 or an int >= 1.
    """
    if sde is None:
        return None
    if not isinstance(sde, dict) or set(sde) - set(SDE_KEYS):
        raise ConfigError(message("agent.sde", sde, f"null or a dict of {', '.join(SDE_KEYS)}"))
    freq = sde.get("sample_freq", -1)
    if isinstance(freq, bool) or not isinstance(freq, int) or (freq < 1 and freq != -1):
        raise ConfigError(message("agent.sde.sample_freq", freq, "-1 or an int >= 1"))
    return {k: v for k, v in sde.items() if k != "sample_freq"}


class ResampleSchedule:
    """Draws gSDE matrices at each rollout start and every ``sample_freq`` steps per slot.

    SB3's cadence (``reset_noise`` when a rollout starts, and every ``sde_sample_freq`` steps
    of it); here counted per slot so unbatched acts keep it too.

    Args:
        heads: The policy's ``StateDependentHead``s.
        sample_freq: Steps per slot between draws; -1: only at rollout starts.
        slots: Parallel slots.
        rollout_rows: Rows per rollout (``rollout_length * slots``): a rollout starts each
            time the timestep count passes a multiple of it.
    """

    def __init__(
        self, heads: list[StateDependentHead], sample_freq: int, slots: int, rollout_rows: int
    ) -> None:
        self.heads, self.sample_freq, self.rollout_rows = heads, sample_freq, rollout_rows
        self.age = np.zeros(slots, dtype=np.int64)
        self.rollout = 0

    def before_act(self, slots: np.ndarray, independent: bool, timesteps: int) -> None:
        """Point the heads' rows at ``slots``; draw new matrices where due (stored acts only)."""
        device = self.heads[0].matrices.device
        index = torch.as_tensor(slots, device=device)
        due = None
        if not independent:
            rollout = timesteps // self.rollout_rows
            if rollout != self.rollout:
                self.rollout, self.age[:] = rollout, 0
                due = torch.arange(len(self.age), device=device)
            elif self.sample_freq > 0:
                due = index[torch.as_tensor(self.age[slots] % self.sample_freq == 0)]
            self.age[slots] += 1
        for head in self.heads:
            head.rows = index
            if due is not None and len(due):
                head.resample(due)
