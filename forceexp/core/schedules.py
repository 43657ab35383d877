"""Parameter schedules: a hyperparameter's value as a pure function of training progress."""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

from forceexp.errors import ConfigError, message, unknown_name

Unit = Literal["timesteps", "episodes", "updates"]
UNITS = ("timesteps", "episodes", "updates")
ScheduleName = Literal["constant", "linear"]  # PPO's lr_schedule / clip_schedule names
SCHEDULES = ("constant", "linear")


class Schedule:
    """Base of the schedule types: ``value(timesteps, episodes, updates)`` picks ``unit``."""

    unit: Unit

    def value(self, timesteps: int, episodes: int, updates: int) -> float:
        """The value after the given counters (only the one named by ``unit`` is used)."""
        if self.unit == "timesteps":
            return self.at(timesteps)
        return self.at(episodes if self.unit == "episodes" else updates)

    def at(self, step: float) -> float:
        """The value after ``step`` units."""
        raise NotImplementedError

    def bounds(self) -> tuple[float, float]:
        """Smallest and largest value the schedule takes (for range checks)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    """Always ``constant``."""

    constant: float
    unit: Unit = "timesteps"

    def at(self, step: float) -> float:  # noqa: D102
        return self.constant

    def bounds(self) -> tuple[float, float]:  # noqa: D102
        return self.constant, self.constant


@dataclass(frozen=True)
class Linear(Schedule):
    """From ``initial_value`` to ``final_value`` over ``num_steps`` units, then ``final_value``."""

    initial_value: float
    final_value: float
    num_steps: int
    unit: Unit = "timesteps"

    def at(self, step: float) -> float:  # noqa: D102
        remaining = max(0.0, 1.0 - step / self.num_steps)
        return self.final_value + (self.initial_value - self.final_value) * remaining

    def bounds(self) -> tuple[float, float]:  # noqa: D102
        return min(self.initial_value, self.final_value), max(self.initial_value, self.final_value)


@dataclass(frozen=True)
class Exponential(Schedule):
    """``initial_value * decay_rate ** (step / num_steps)``, floored at ``final_value`` if given."""

    initial_value: float
    decay_rate: float
    num_steps: int
    final_value: float | None = None
    unit: Unit = "timesteps"

    def at(self, step: float) -> float:  # noqa: D102
        value = self.initial_value * self.decay_rate ** (step / self.num_steps)
        return value if self.final_value is None else max(value, self.final_value)

    def bounds(self) -> tuple[float, float]:  # noqa: D102
        low = 0.0 if self.final_value is None else self.final_value
        return min(low, self.initial_value), max(low, self.initial_value)


@dataclass(frozen=True)
class Piecewise(Schedule):
    """Piecewise constant: ``values[i]`` while ``boundaries[i-1] < step <= boundaries[i]``.

    As Tensorforce (TensorFlow's ``piecewise_constant``): ``values[0]`` up to and including
    ``boundaries[0]``, ``values[-1]`` after ``boundaries[-1]``.
    """

    boundaries: tuple[float, ...]
    values: tuple[float, ...]
    unit: Unit = "timesteps"

    def at(self, step: float) -> float:  # noqa: D102
        return self.values[bisect.bisect_left(self.boundaries, step)]

    def bounds(self) -> tuple[float, float]:  # noqa: D102
        return min(self.values), max(self.values)


@dataclass(frozen=True)
class Truncated(Schedule):
    """An int parameter: ``schedule``'s value truncated toward zero (as Tensorforce casts)."""

    schedule: Schedule

    @property
    def unit(self) -> Unit:  # type: ignore[override]  # noqa: D102
        return self.schedule.unit

    def value(self, timesteps: int, episodes: int, updates: int) -> float:  # noqa: D102
        return float(math.trunc(self.schedule.value(timesteps, episodes, updates)))

    def bounds(self) -> tuple[float, float]:  # noqa: D102
        low, high = self.schedule.bounds()
        return tuple(float(math.trunc(x)) if math.isfinite(x) else x for x in (low, high))  # type: ignore[return-value]


@dataclass(frozen=True)
class Clipped(Schedule):
    """``schedule``'s value clipped to ``[low, high]`` (a random process in a bounded argument)."""

    schedule: Schedule
    low: float
    high: float

    @property
    def unit(self) -> Unit:  # type: ignore[override]  # noqa: D102
        return self.schedule.unit

    def value(self, timesteps: int, episodes: int, updates: int) -> float:  # noqa: D102
        return min(max(self.schedule.value(timesteps, episodes, updates), self.low), self.high)

    def bounds(self) -> tuple[float, float]:  # noqa: D102
        low, high = self.schedule.bounds()
        return max(low, self.low), min(high, self.high)


# ---------------------------------------------------------------------------- parsing
def _finite(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(message(path, value, "a finite number"))
    return float(value)


def _number(spec: dict[str, Any], key: str, path: str, default: Any = ...) -> Any:
    """``spec[key]`` as a finite float (``default`` when absent, required without one)."""
    if key not in spec:
        if default is ...:
            raise ConfigError(message(path, spec, f"a dict with {key!r}"))
        return default
    return _finite(spec[key], f"{path}.{key}")


def _numbers(items: Any, path: str) -> tuple[float, ...]:
    if not isinstance(items, list | tuple):
        raise ConfigError(message(path, items, "a list of numbers"))
    return tuple(_finite(x, f"{path}[{i}]") for i, x in enumerate(items))


def _num_steps(spec: dict[str, Any], path: str) -> int:
    steps = spec.get("num_steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(message(f"{path}.num_steps", steps, "an int >= 1"))
    return steps


def _linear(spec: dict[str, Any], path: str, horizon: int | None) -> Linear:
    initial, final = _number(spec, "initial_value", path), _number(spec, "final_value", path)
    if "fraction" not in spec:
        return Linear(initial, final, _num_steps(spec, path), spec.get("unit", "timesteps"))
    fraction = _number(spec, "fraction", path)
    if "num_steps" in spec:
        raise ConfigError(message(path, spec, "either num_steps or fraction, not both"))
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(message(f"{path}.fraction", fraction, "a number in (0, 1]"))
    if spec.get("unit", "timesteps") != "timesteps":
        raise ConfigError(message(f"{path}.unit", spec["unit"], "'timesteps' with fraction"))
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        hint = "fraction needs the training budget; set schedule_timesteps (or use num_steps)"
        raise ConfigError(message(f"{path}.fraction", fraction, "a known horizon", hint))
    return Linear(initial, final, max(1, round(fraction * horizon)))


def _exponential(spec: dict[str, Any], path: str, horizon: int | None) -> Exponential:
    initial, rate = _number(spec, "initial_value", path), _number(spec, "decay_rate", path)
    if not 0.0 < rate <= 1.0:
        raise ConfigError(message(f"{path}.decay_rate", rate, "a number in (0, 1]"))
    final = _number(spec, "final_value", path, None)
    if final is not None and final > initial:
        raise ConfigError(message(f"{path}.final_value", final, f"a number <= {initial}"))
    unit = spec.get("unit", "timesteps")
    return Exponential(initial, rate, _num_steps(spec, path), final, unit)


def _piecewise(spec: dict[str, Any], path: str, horizon: int | None) -> Piecewise:
    boundaries = _numbers(spec.get("boundaries"), f"{path}.boundaries")
    values = _numbers(spec.get("values"), f"{path}.values")
    if any(a >= b for a, b in itertools.pairwise(boundaries)):
        raise ConfigError(message(f"{path}.boundaries", boundaries, "strictly increasing"))
    if len(values) != len(boundaries) + 1:
        expected = f"{len(boundaries) + 1} values (one more than boundaries)"
        raise ConfigError(message(f"{path}.values", values, expected))
    return Piecewise(boundaries, values, spec.get("unit", "timesteps"))


def _constant(spec: dict[str, Any], path: str, horizon: int | None) -> Constant:
    return Constant(_number(spec, "value", path), spec.get("unit", "timesteps"))


_BUILDERS = {
    "constant": (_constant, {"value"}),
    "linear": (_linear, {"initial_value", "final_value", "num_steps", "fraction"}),
    "exponential": (_exponential, {"initial_value", "decay_rate", "num_steps", "final_value"}),
    "piecewise": (_piecewise, {"boundaries", "values"}),
    "piecewise_constant": (_piecewise, {"boundaries", "values"}),  # Tensorforce's name
}
#: Tensorforce's parameter types built by ``forceexp.core.parameters`` (decays, processes)
TENSORFORCE_TYPES = (
    "decaying",
    "cosine",
    "cosine_restarts",
    "inverse_time",
    "linear_cosine",
    "natural_exponential",
    "polynomial",
    "ornstein_uhlenbeck",
    "random",
)
TYPES = (*_BUILDERS, *TENSORFORCE_TYPES)


def parse_schedule(
    spec: Any, path: str, horizon: int | None = None, integer: bool = False
) -> Schedule:
    """Build a schedule from a number (constant), a schedule dict or a ``Schedule``.

    Args:
        spec: A number; a ``Schedule``; or a dict with ``type`` (``TYPES``: ``'constant'``,
            ``'linear'``, ``'exponential'``, ``'piecewise'``, Tensorforce's ``'decaying'`` and
            its decays, ``'piecewise_constant'``, ``'ornstein_uhlenbeck'``, ``'random'``),
            ``unit`` (``'timesteps'``, ``'episodes'`` or ``'updates'``; default timesteps),
            ``dtype`` (``'float'`` or ``'int'``) and that type's keys (``docs/schedules.md``).
        path: Config path used in error messages, e.g. ``'agent.learning_rate'``.
        horizon: Training budget in timesteps; needed only by a linear ``fraction``.
        integer: An int parameter (Tensorforce's ``horizon``): values are truncated to ints
            and ``linear``/``exponential`` are read as Tensorforce reads them (``Decaying``).
            ``dtype='int'`` in the dict does the same.

    Returns:
        The schedule.

    Raises:
        ConfigError: For an unknown type, unit or key, or a missing or invalid value.
    """
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return Constant(_finite(spec, path))
    if not isinstance(spec, dict):
        raise ConfigError(message(path, spec, "a number or a schedule dict with 'type'"))
    kind = spec.get("type")
    if kind not in TYPES:
        raise unknown_name(f"{path}.type", str(kind), TYPES, "schedule type")
    dtype = spec.get("dtype", "int" if integer else "float")
    if dtype not in ("int", "float"):
        raise ConfigError(message(f"{path}.dtype", dtype, "'float' or 'int'"))
    spec = {key: value for key, value in spec.items() if key != "dtype"}
    if spec.get("unit", "timesteps") not in UNITS:
        raise ConfigError(message(f"{path}.unit", spec["unit"], f"one of {', '.join(UNITS)}"))
    if kind in TENSORFORCE_TYPES or (dtype == "int" and kind in ("linear", "exponential")):
        from forceexp.core.parameters import parse_parameter  # it builds on this module

        schedule = parse_parameter(spec, path)
    else:
        build, keys = _BUILDERS[kind]
        _check_keys(spec, path, keys)
        schedule = build(spec, path, horizon)
    return Truncated(schedule) if dtype == "int" else schedule


def _check_keys(spec: dict[str, Any], path: str, keys: set[str]) -> None:
    """Refuse any key of ``spec`` outside ``keys`` (and ``type``/``unit``), listing the valid."""
    valid = keys | {"type", "unit"}
    for key in spec:
        if key not in valid:
            expected = f"no such key; valid: {', '.join(sorted(valid))}"
            raise ConfigError(message(f"{path}.{key}", spec[key], expected))


# ---------------------------------------------------------------------------- PPO's names
def check_schedule(path: str, name: str, horizon: int | None) -> None:
    """Validate a schedule name and that a decaying schedule knows its horizon."""
    if name not in SCHEDULES:
        raise ConfigError(f"{path}: unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    if name != "constant" and (horizon is None or horizon < 1):
        raise ConfigError(
            f"{path}: schedule {name!r} needs schedule_timesteps >= 1 (got {horizon!r}); "
            "set schedule_timesteps to the training budget in timesteps"
        )


def named_schedule(spec: Any, name: ScheduleName, path: str, horizon: int | None) -> Schedule:
    """``spec`` under PPO's schedule name: ``'linear'`` decays a number to 0 at ``horizon``.

    ``linear`` is Stable-Baselines3's ``progress_remaining`` decay over ``horizon`` timesteps
    (call ``check_schedule`` first). A schedule dict is taken as it is (with ``'constant'``).

    Raises:
        ConfigError: For a bad ``spec``, or a schedule dict together with ``'linear'``.
    """
    schedule = parse_schedule(spec, path, horizon)
    if name == "constant":
        return schedule
    if not isinstance(schedule, Constant):
        raise ConfigError(message(path, spec, f"a number with the '{name}' schedule name"))
    return Linear(schedule.constant, 0.0, horizon)  # type: ignore[arg-type]
