"""Tensorforce's parameter types: the ``decaying`` formulas and stateful random processes.

``parse_schedule`` builds these for the types in ``schedules.TENSORFORCE_TYPES`` (and for an
int parameter's ``linear``/``exponential``, which Tensorforce reads as ``decaying``). The
decays follow Tensorforce, which evaluates Keras's learning-rate schedules with
``decay_steps = num_steps + 1``; ``ornstein_uhlenbeck`` and ``random`` draw a new value once
per unit step, from their own seeded generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from forceexp.core.schedules import Clipped, Schedule, Unit, _check_keys, _num_steps, _number
from forceexp.errors import ConfigError, message, unknown_name

#: Tensorforce's ``decaying`` parameter kinds (Keras's learning-rate schedule formulas)
DECAYS = (
    "cosine",
    "cosine_restarts",
    "exponential",
    "inverse_time",
    "linear",
    "linear_cosine",
    "natural_exponential",
    "polynomial",
)


@dataclass(frozen=True)
class Decaying(Schedule):
    """Tensorforce's ``decaying`` parameter: a Keras decay formula over ``decay_steps``.

    ``decay`` names the formula (``DECAYS``; ``options`` holds its own arguments: ``final_value``,
    ``power``, ``cycle``, ``decay_rate``, ``staircase``, ``alpha``, ``t_mul``, ``m_mul``,
    ``num_periods``, ``beta``). The decayed value ``v`` then becomes ``1 - v`` (``increasing``),
    ``1 / v`` (``inverse``) and is multiplied by ``scale``, in that order. Tensorforce passes
    ``num_steps + 1`` as ``decay_steps`` (``parse_schedule`` does too).
    """

    decay: str
    initial_value: float
    decay_steps: int
    options: tuple[tuple[str, Any], ...] = ()
    increasing: bool = False
    inverse: bool = False
    scale: float = 1.0
    unit: Unit = "timesteps"

    def option(self, key: str, default: Any = None) -> Any:
        """A decay argument, or ``default`` when not given."""
        return dict(self.options).get(key, default)

    def at(self, step: float) -> float:  # noqa: D102
        value = _decayed(self, max(0.0, float(step)))
        if self.increasing:
            value = 1.0 - value
        if self.inverse:
            value = 1.0 / (value + (1e-6 if value >= 0.0 else -1e-6))
        return value * self.scale

    def bounds(self) -> tuple[float, float]:  # noqa: D102
        low, high = _decay_range(self)
        if self.increasing:
            low, high = 1.0 - high, 1.0 - low
        if self.inverse:
            low, high = 1.0 / high, 1.0 / low
        return tuple(sorted((low * self.scale, high * self.scale)))  # type: ignore[return-value]


def _decayed(s: Decaying, step: float) -> float:
    """The decay formula of ``s`` at ``step`` (before increasing/inverse/scale)."""
    a, steps, option = s.initial_value, s.decay_steps, s.option
    progress = step / steps
    if s.decay in ("exponential", "inverse_time", "natural_exponential"):
        p = math.floor(progress) if option("staircase", False) else progress
        rate = option("decay_rate")
        if s.decay == "exponential":
            return a * rate**p
        return a / (1.0 + rate * p) if s.decay == "inverse_time" else a * math.exp(-rate * p)
    if s.decay in ("polynomial", "linear"):
        final, power = option("final_value"), option("power", 1.0)
        if option("cycle", False):
            steps = steps * max(1.0, math.ceil(progress))
        else:
            step = min(step, steps)
        return (a - final) * (1.0 - step / steps) ** power + final
    alpha = option("alpha", 0.0)
    if s.decay == "cosine":
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))
        return a * ((1.0 - alpha) * cosine + alpha)
    if s.decay == "linear_cosine":
        step = min(step, steps)
        periods, beta = option("num_periods", 0.5), option("beta", 0.001)
        cosine = 0.5 * (1.0 + math.cos(2.0 * math.pi * periods * step / steps))
        return a * ((alpha + (steps - step) / steps) * cosine + beta)
    return a * _restarts(progress, option("t_mul", 2.0), option("m_mul", 1.0), alpha)


def _restarts(fraction: float, t_mul: float, m_mul: float, alpha: float) -> float:
    """SGDR's cosine factor after ``fraction`` first periods (periods grow by ``t_mul``)."""
    if t_mul == 1.0:
        restart = math.floor(fraction)
        fraction -= restart
    else:
        restart = math.floor(math.log(1.0 - fraction * (1.0 - t_mul)) / math.log(t_mul))
        fraction = (fraction - (1.0 - t_mul**restart) / (1.0 - t_mul)) / t_mul**restart
    cosine = 0.5 * m_mul**restart * (1.0 + math.cos(math.pi * fraction))
    return (1.0 - alpha) * cosine + alpha


def _decay_range(s: Decaying) -> tuple[float, float]:
    """Smallest and largest decayed value (Tensorforce's ``min_value``/``max_value``)."""
    a, option = s.initial_value, s.option
    if s.decay in ("cosine", "cosine_restarts"):
        ends = (a, a * option("alpha", 0.0))
        if s.decay == "cosine_restarts" and option("m_mul", 1.0) > 1.0:
            return -math.inf, math.inf  # restarts grow without bound
    elif s.decay in ("exponential", "inverse_time", "natural_exponential"):
        ends = (a, a) if option("decay_rate") == 0.0 else (a, 0.0)
        if s.decay == "exponential" and option("decay_rate") == 1.0:
            ends = (a, a)
    elif s.decay == "linear_cosine":
        alpha, beta = option("alpha", 0.0), option("beta", 0.001)
        ends = (a * beta, a * (1.0 + alpha + beta))
    else:
        ends = (a, a) if option("power", 1.0) == 0.0 else (a, option("final_value"))
    return min(ends), max(ends)


#: each decay's own arguments: name -> (required, range check or None)
_DECAY_OPTIONS: dict[str, dict[str, tuple[bool, tuple[float, float] | None]]] = {
    "linear": {"final_value": (True, None)},
    "polynomial": {
        "final_value": (True, None),
        "power": (False, (0, math.inf)),
        "cycle": (False, None),
    },
    "exponential": {"decay_rate": (True, (0, 1)), "staircase": (False, None)},
    "inverse_time": {"decay_rate": (True, (0, math.inf)), "staircase": (False, None)},
    "natural_exponential": {"decay_rate": (True, (0, math.inf)), "staircase": (False, None)},
    "cosine": {"alpha": (False, (0, 1))},
    "cosine_restarts": {
        "alpha": (False, (0, 1)),
        "t_mul": (False, (1e-6, math.inf)),
        "m_mul": (False, (0, math.inf)),
    },
    "linear_cosine": {
        "alpha": (False, (0, 1)),
        "beta": (False, (0, 1)),
        "num_periods": (False, (0, math.inf)),
    },
}
_FLAGS = ("cycle", "staircase", "increasing", "inverse")
_DECAYING_KEYS = {"decay", "num_steps", "initial_value", "increasing", "inverse", "scale"}


def _decaying(spec: dict[str, Any], path: str) -> Decaying:
    """Tensorforce's ``decaying`` (``decay=``) or one of its decays named as the type."""
    decay = spec.get("decay") if spec["type"] == "decaying" else spec["type"]
    if decay not in DECAYS:
        raise unknown_name(f"{path}.decay", str(decay), DECAYS, "decay")
    allowed = _DECAY_OPTIONS[decay]
    keys = _DECAYING_KEYS | set(allowed)
    _check_keys(spec, path, keys if spec["type"] == "decaying" else keys - {"decay"})
    for key in _FLAGS:
        if key in spec and not isinstance(spec[key], bool):
            raise ConfigError(message(f"{path}.{key}", spec[key], "True or False"))
    options = {}
    for key, (required, limits) in allowed.items():
        if key in _FLAGS:
            options[key] = spec.get(key, False)
            continue
        value = _number(spec, key, path, ... if required else None)
        if value is not None and limits is not None and not limits[0] <= value <= limits[1]:
            raise ConfigError(
                message(f"{path}.{key}", value, f"a number in [{limits[0]}, {limits[1]}]")
            )
        if value is not None:
            options[key] = value
    schedule = Decaying(
        decay,
        _number(spec, "initial_value", path),
        _num_steps(spec, path) + 1,  # Tensorforce's decay_steps
        tuple(sorted(options.items())),
        spec.get("increasing", False),
        spec.get("inverse", False),
        _number(spec, "scale", path, 1.0),
        spec.get("unit", "timesteps"),
    )
    low, high = _decay_range(schedule)
    if schedule.increasing and not 0.0 <= low <= high <= 1.0:
        raise ConfigError(message(f"{path}.increasing", True, "decayed values within [0, 1]"))
    if schedule.inverse and (low <= 0.0 if not schedule.increasing else high >= 1.0):
        raise ConfigError(message(f"{path}.inverse", True, "decayed values > 0"))
    return schedule


# ---------------------------------------------------------------------------- random processes
#: unit steps a process catches up at most per read (the OU process forgets its state long
#: before: 0.85 ** 1000 ~ 1e-71)
_MAX_CATCH_UP = 1000


class Process(Schedule):
    """A stateful random parameter: a new value once per unit step, the same between reads.

    The generator is ``np.random.default_rng(seed)``; without a seed it is seeded from
    torch's global generator at the first read (after the agent seeded it), so a seeded agent
    draws the same values. Reading a step earlier than the last returns the current value.

    Args:
        unit: The counter whose steps advance the process.
        seed: Seed of the process's generator (None: drawn from torch at the first read).
    """

    def __init__(self, unit: Unit, seed: int | None) -> None:
        self.unit, self.seed = unit, seed
        self.rng: np.random.Generator | None = None
        self._step, self._value = 0, 0.0

    def at(self, step: float) -> float:  # noqa: D102
        if self.rng is None:
            seed = self.seed if self.seed is not None else int(torch.randint(2**62, ()).item())
            self.rng = np.random.default_rng(seed)
            self._value = self.start()
        for _ in range(min(int(step) - self._step, _MAX_CATCH_UP)):
            self._value = self.advance(self._value)
        self._step = max(self._step, int(step))
        return self._value

    def start(self) -> float:
        """The value at step 0."""
        raise NotImplementedError

    def advance(self, value: float) -> float:
        """The value one unit step after ``value``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        shown = {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "rng"}
        fields = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"{type(self).__name__}({fields})"


class OrnsteinUhlenbeck(Process):
    """Tensorforce's ``ornstein_uhlenbeck``: ``x <- x + theta * (mu - x) + sigma * N(0, 1)``.

    Starts at ``mu``; ``absolute`` keeps ``|x|`` after every step (a non-negative parameter).
    """

    def __init__(
        self,
        theta: float = 0.15,
        sigma: float = 0.3,
        mu: float = 0.0,
        absolute: bool = False,
        unit: Unit = "timesteps",
        seed: int | None = None,
    ) -> None:
        super().__init__(unit, seed)
        self.theta, self.sigma, self.mu, self.absolute = theta, sigma, mu, absolute

    def start(self) -> float:  # noqa: D102
        return abs(self.mu) if self.absolute else self.mu

    def advance(self, value: float) -> float:  # noqa: D102
        value += self.theta * (self.mu - value) + self.sigma * float(self.rng.standard_normal())
        return abs(value) if self.absolute else value

    def bounds(self) -> tuple[float, float]:  # noqa: D102
        return (0.0 if self.absolute else -math.inf), math.inf


class Random(Process):
    """Tensorforce's ``random``: an independent draw per unit step.

    ``'uniform'`` in ``[minval, maxval)``, ``'normal'`` with ``mean`` and ``stddev``.
    """

    def __init__(
        self,
        distribution: str,
        minval: float = 0.0,
        maxval: float = 1.0,
        mean: float = 0.0,
        stddev: float = 1.0,
        unit: Unit = "timesteps",
        seed: int | None = None,
    ) -> None:
        super().__init__(unit, seed)
        self.distribution = distribution
        self.minval, self.maxval, self.mean, self.stddev = minval, maxval, mean, stddev

    def start(self) -> float:  # noqa: D102
        return self.advance(0.0)

    def advance(self, value: float) -> float:  # noqa: D102
        if self.distribution == "uniform":
            return float(self.rng.uniform(self.minval, self.maxval))
        return float(self.rng.normal(self.mean, self.stddev))

    def bounds(self) -> tuple[float, float]:  # noqa: D102
        if self.distribution == "uniform":
            return self.minval, self.maxval
        return -math.inf, math.inf


def _seed(spec: dict[str, Any], path: str) -> int | None:
    seed = spec.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError(message(f"{path}.seed", seed, "None or an int >= 0"))
    return seed


def _ornstein_uhlenbeck(spec: dict[str, Any], path: str) -> OrnsteinUhlenbeck:
    _check_keys(spec, path, {"theta", "sigma", "mu", "absolute", "seed"})
    theta, sigma = _number(spec, "theta", path, 0.15), _number(spec, "sigma", path, 0.3)
    if not 0.0 < theta <= 1.0:
        raise ConfigError(message(f"{path}.theta", theta, "a number in (0, 1]"))
    if sigma < 0.0:
        raise ConfigError(message(f"{path}.sigma", sigma, "a number >= 0"))
    absolute = spec.get("absolute", False)
    if not isinstance(absolute, bool):
        raise ConfigError(message(f"{path}.absolute", absolute, "True or False"))
    mu = _number(spec, "mu", path, 0.0)
    return OrnsteinUhlenbeck(
        theta, sigma, mu, absolute, spec.get("unit", "timesteps"), _seed(spec, path)
    )


def _random(spec: dict[str, Any], path: str) -> Random:
    distribution = spec.get("distribution")
    if distribution not in ("uniform", "normal"):
        raise ConfigError(message(f"{path}.distribution", distribution, "'uniform' or 'normal'"))
    keys = {"minval", "maxval"} if distribution == "uniform" else {"mean", "stddev"}
    _check_keys(spec, path, {"distribution", "seed", *keys})
    low, high = _number(spec, "minval", path, 0.0), _number(spec, "maxval", path, 1.0)
    if high <= low:
        raise ConfigError(message(f"{path}.maxval", high, f"a number > minval ({low})"))
    stddev = _number(spec, "stddev", path, 1.0)
    if stddev <= 0.0:
        raise ConfigError(message(f"{path}.stddev", stddev, "a number > 0"))
    mean, unit = _number(spec, "mean", path, 0.0), spec.get("unit", "timesteps")
    return Random(distribution, low, high, mean, stddev, unit, _seed(spec, path))


def parse_parameter(spec: dict[str, Any], path: str) -> Schedule:
    """Build one of Tensorforce's parameter types (``spec`` is checked for type and unit).

    Raises:
        ConfigError: For an unknown decay or key, or a missing or invalid value.
    """
    if spec["type"] == "ornstein_uhlenbeck":
        return _ornstein_uhlenbeck(spec, path)
    if spec["type"] == "random":
        return _random(spec, path)
    return _decaying(spec, path)


def bounded(
    schedule: Schedule, spec: Any, path: str, low: float, high: float, expected: str
) -> Schedule:
    """``schedule`` if its values stay in ``[low, high]``; a random process clipped to it.

    Args:
        schedule: The parsed schedule.
        spec: What the user gave (for the error message).
        path: Config path, e.g. ``'agent.exploration'``.
        low: Smallest valid value.
        high: Largest valid value.
        expected: The error's expectation, e.g. ``'a schedule with values in [0, 1]'``.

    Raises:
        ConfigError: A deterministic schedule leaves the range.
    """
    if isinstance(schedule, Process):
        return Clipped(schedule, low, high)
    smallest, largest = schedule.bounds()
    if smallest < low or largest > high:
        raise ConfigError(message(path, spec, expected))
    return schedule
