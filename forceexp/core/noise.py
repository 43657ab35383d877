"""Action noise for deterministic continuous policies (DDPG, TD3): Gaussian and Ornstein-Uhlenbeck.

A noise process keeps one state per parallel slot, shape ``(parallel, *action_shape)``; the
agent calls ``sample(slots, ...)`` at each act and ``reset(slots)`` at episode ends. The scale
(``std`` / ``sigma``) may be a ``Schedule``; ``sample`` takes the agent's counters for it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from forceexp.core.parameters import bounded
from forceexp.core.schedules import TYPES, Schedule, parse_schedule
from forceexp.errors import ConfigError, message, unknown_name


class Noise:
    """Base of the noise processes: per-slot state, ``sample`` and ``reset``.

    Args:
        scale: Standard deviation (Gaussian) or sigma (OU): a number or a ``Schedule``.
        shape: One action's shape, e.g. ``(2,)``.
        parallel: Number of parallel slots (an int >= 1).
        seed: Seed of the noise's own ``np.random.Generator`` (None: from the OS).
    """

    def __init__(
        self, scale: float | Schedule, shape: tuple[int, ...], parallel: int, seed: int | None
    ) -> None:
        self.scale = parse_schedule(scale, "noise.scale")
        self.shape, self.parallel = tuple(shape), parallel
        self.rng = np.random.default_rng(seed)

    def current_scale(self, timesteps: int = 0, episodes: int = 0, updates: int = 0) -> float:
        """The scale after the given agent counters."""
        return self.scale.value(timesteps, episodes, updates)

    def sample(
        self, slots: np.ndarray, timesteps: int = 0, episodes: int = 0, updates: int = 0
    ) -> np.ndarray:
        """Noise ``(B, *shape)`` float32 for slots ``(B,)`` (counters pick a scheduled scale)."""
        raise NotImplementedError

    def reset(self, slots: np.ndarray | None = None) -> None:
        """Restart the process of ``slots`` (None: all), e.g. at their episode ends."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generator state and any per-slot process state, as fixed-shape tensors."""
        out = {"rng": _pcg64_to_tensor(self.rng.bit_generator.state)}
        process = getattr(self, "state", None)
        if process is not None:
            out["state"] = torch.from_numpy(process.copy())
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what ``state_dict`` returned (so a resumed run draws the same noise)."""
        if "rng" in state:
            self.rng.bit_generator.state = _pcg64_from_tensor(state["rng"])
        process = getattr(self, "state", None)
        if process is not None and "state" in state:
            process[...] = state["state"].numpy()


_WORDS = 4  # 32-bit words per 128-bit PCG64 number


def _pcg64_to_tensor(state: dict[str, Any]) -> torch.Tensor:
    """PCG64 state as 10 int64 values (128-bit ``state`` and ``inc`` in 32-bit words)."""
    inner = state["state"]
    words = [
        (inner[key] >> (32 * i)) & 0xFFFFFFFF for key in ("state", "inc") for i in range(_WORDS)
    ]
    return torch.tensor([*words, state["has_uint32"], state["uinteger"]], dtype=torch.int64)


def _pcg64_from_tensor(tensor: torch.Tensor) -> dict[str, Any]:
    """The inverse of ``_pcg64_to_tensor``."""
    values = [int(v) for v in tensor.tolist()]

    def number(offset: int) -> int:
        return sum(values[offset + i] << (32 * i) for i in range(_WORDS))

    return {
        "bit_generator": "PCG64",
        "state": {"state": number(0), "inc": number(_WORDS)},
        "has_uint32": values[-2],
        "uinteger": values[-1],
    }


class GaussianNoise(Noise):
    """Independent ``N(mean, std**2)`` draws (SB3 ``NormalActionNoise``); stateless.

    Args:
        std: Standard deviation: a number >= 0 or a ``Schedule``.
        shape: One action's shape.
        parallel: Number of parallel slots.
        mean: Mean of the draws.
        seed: Generator seed.
    """

    def __init__(
        self,
        std: float | Schedule,
        shape: tuple[int, ...] = (),
        parallel: int = 1,
        mean: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(std, shape, parallel, seed)
        self.mean = mean

    def sample(  # noqa: D102
        self, slots: np.ndarray, timesteps: int = 0, episodes: int = 0, updates: int = 0
    ) -> np.ndarray:
        std = self.current_scale(timesteps, episodes, updates)
        size = (len(np.atleast_1d(slots)), *self.shape)
        return self.rng.normal(self.mean, std, size).astype(np.float32)


class OrnsteinUhlenbeckNoise(Noise):
    """Temporally correlated noise (SB3 ``OrnsteinUhlenbeckActionNoise``), one process per slot.

    ``x <- x + theta * (mu - x) * dt + sigma * sqrt(dt) * N(0, 1)``; ``reset`` sets ``x = mu``.

    Args:
        sigma: Scale of the random term: a number >= 0 or a ``Schedule``.
        shape: One action's shape.
        parallel: Number of parallel slots.
        theta: Rate of mean reversion (> 0).
        dt: Time step (> 0).
        mu: Long-run mean (and reset value).
        seed: Generator seed.
    """

    def __init__(
        self,
        sigma: float | Schedule,
        shape: tuple[int, ...] = (),
        parallel: int = 1,
        theta: float = 0.15,
        dt: float = 1e-2,
        mu: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(sigma, shape, parallel, seed)
        self.theta, self.dt, self.mu = theta, dt, mu
        self.state = np.full((parallel, *self.shape), mu, dtype=np.float64)

    def sample(  # noqa: D102
        self, slots: np.ndarray, timesteps: int = 0, episodes: int = 0, updates: int = 0
    ) -> np.ndarray:
        sigma = self.current_scale(timesteps, episodes, updates)
        slots = np.atleast_1d(slots)
        x = self.state[slots]
        x = x + self.theta * (self.mu - x) * self.dt
        x += sigma * math.sqrt(self.dt) * self.rng.standard_normal(x.shape)
        self.state[slots] = x
        return x.astype(np.float32)

    def reset(self, slots: np.ndarray | None = None) -> None:  # noqa: D102
        self.state[slice(None) if slots is None else np.atleast_1d(slots)] = self.mu


# ---------------------------------------------------------------------------- from a spec
_KEYS = {
    "gaussian": (GaussianNoise, "std", {"mean"}),
    "ornstein_uhlenbeck": (OrnsteinUhlenbeckNoise, "sigma", {"theta", "dt", "mu"}),
}
_ALIASES = {"normal": "gaussian", "ou": "ornstein_uhlenbeck"}


def _scale(spec: Any, path: str) -> Schedule:
    expected = "a number >= 0 or a schedule of numbers >= 0"
    return bounded(parse_schedule(spec, path), spec, path, 0.0, math.inf, expected)


def _check_options(options: dict[str, Any], path: str) -> None:
    for key, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(message(f"{path}.{key}", value, "a number"))
        if key in ("theta", "dt") and not 0.0 < value < math.inf:
            raise ConfigError(message(f"{path}.{key}", value, "a number > 0"))
        if not math.isfinite(value):
            raise ConfigError(message(f"{path}.{key}", value, "a finite number"))


def make_noise(
    spec: Any, shape: tuple[int, ...], parallel: int, path: str, seed: int | None = None
) -> Noise | None:
    """Build action noise from a spec.

    Args:
        spec: None (no noise); a number (Gaussian ``std``); or a dict with ``type``
            (``'gaussian'``/``'normal'``: ``std``, ``mean``; ``'ornstein_uhlenbeck'``/``'ou'``:
            ``sigma``, ``theta``, ``dt``, ``mu``), where ``std``/``sigma`` may be a schedule dict;
            or a schedule dict itself (Tensorforce's float ``exploration``): Gaussian noise
            with that ``std``.
        shape: One action's shape, e.g. ``(2,)``.
        parallel: Number of parallel slots.
        path: Config path used in error messages, e.g. ``'agent.exploration'``.
        seed: Seed of the noise generator.

    Returns:
        The noise process, or None for ``spec=None``.

    Raises:
        ConfigError: For an unknown type or key, or an invalid value.
    """
    if spec is None:
        return None
    if isinstance(spec, int | float | Schedule) and not isinstance(spec, bool):
        return GaussianNoise(_scale(spec, path), shape, parallel, seed=seed)
    if not isinstance(spec, dict):
        raise ConfigError(message(path, spec, "None, a number (Gaussian std) or a dict"))
    options = dict(spec)
    kind = str(options.pop("type", None))
    kind = _ALIASES.get(kind, kind)
    if kind not in _KEYS and kind in TYPES:  # a schedule: Tensorforce's exploration std
        return GaussianNoise(_scale(spec, path), shape, parallel, seed=seed)
    if kind not in _KEYS:
        raise unknown_name(f"{path}.type", str(spec.get("type")), [*_KEYS, *_ALIASES], "noise")
    cls, scale_key, keys = _KEYS[kind]
    if scale_key not in options:
        raise ConfigError(message(path, spec, f"a dict with {scale_key!r}"))
    scale = _scale(options.pop(scale_key), f"{path}.{scale_key}")
    for key in options:
        if key not in keys:
            valid = ", ".join(sorted({"type", scale_key, *keys}))
            raise ConfigError(
                message(f"{path}.{key}", options[key], f"no such key; valid: {valid}")
            )
    _check_options(options, path)
    return cls(scale, shape, parallel, seed=seed, **options)
