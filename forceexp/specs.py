"""State and action specs: parsing, validation of values, batching, and Gymnasium space mapping."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from forceexp.errors import ConfigError, brief, is_int, message

SpecType = Literal["float", "int", "bool"]
SPEC_KEYS = ("type", "shape", "num_values", "min_value", "max_value")
RESERVED = {*SPEC_KEYS, "num_actions", "bool", "int", "float", "reward", "terminal", "parallel"}
_TYPE_ALIASES = {
    "float": "float",
    "float32": "float",
    "float64": "float",
    "int": "int",
    "int32": "int",
    "int64": "int",
    "long": "int",
    "bool": "bool",
}
NUMPY_DTYPES = {"float": np.float32, "int": np.int64, "bool": np.bool_}


@dataclass(frozen=True)
class TensorSpec:
    """One state or action component.

    Args:
        type: ``'float'``, ``'int'`` or ``'bool'``.
        shape: Shape without any batch axis; ``()`` is a scalar.
        num_values: Number of discrete values of an int component (values ``0..num_values-1``).
        min_value: Lower bound of a float component (scalar or nested list), or None.
        max_value: Upper bound of a float component (scalar or nested list), or None.
    """

    type: SpecType
    shape: tuple[int, ...] = ()
    num_values: int | None = None
    min_value: Any = None
    max_value: Any = None

    @property
    def dtype(self) -> type:
        """NumPy dtype values of this spec are converted to."""
        return NUMPY_DTYPES[self.type]

    @property
    def size(self) -> int:
        """Number of scalar elements (product of the shape)."""
        return math.prod(self.shape)

    @property
    def is_bounded(self) -> bool:
        """Whether a float spec has finite lower and upper bounds."""
        return self.min_value is not None and self.max_value is not None

    def to_dict(self) -> dict[str, Any]:
        """The plain-dict (JSON-ready) form, omitting unset keys."""
        out: dict[str, Any] = {"type": self.type, "shape": list(self.shape)}
        for key in ("num_values", "min_value", "max_value"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class Specs:
    """An ordered collection of named ``TensorSpec``s.

    ``single`` is True when the user gave one unnamed spec; it is then stored under ``default``
    (``'state'`` or ``'action'``) and values are passed and returned unwrapped.
    """

    items: tuple[tuple[str, TensorSpec], ...]
    single: bool = False

    def __getitem__(self, name: str) -> TensorSpec:
        for key, spec in self.items:
            if key == name:
                return spec
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self.items)

    def names(self) -> list[str]:
        """Component names in order."""
        return [key for key, _ in self.items]

    def values(self) -> list[TensorSpec]:
        """Component specs in order."""
        return [spec for _, spec in self.items]

    def to_dict(self) -> dict[str, Any]:
        """The plain-dict form users write (one spec dict when ``single``)."""
        if self.single:
            return self.items[0][1].to_dict()
        return {key: spec.to_dict() for key, spec in self.items}


def _as_shape(path: str, shape: Any) -> tuple[int, ...]:
    if shape is None:
        return ()
    if is_int(shape):
        shape = (int(shape),)
    if isinstance(shape, str | bytes | Mapping) or not isinstance(shape, Iterable):
        raise ConfigError(message(f"{path}.shape", shape, "an int or a tuple of ints"))
    if not all(is_int(d) for d in shape):
        raise ConfigError(message(f"{path}.shape", shape, "an int or a tuple of ints"))
    dims = tuple(int(d) for d in shape)
    if any(d <= 0 for d in dims):
        raise ConfigError(message(f"{path}.shape", shape, "positive dimensions"))
    return dims


def _as_bound(path: str, value: Any) -> Any:
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.asarray(np.nan)  # refused below
    if np.any(np.isnan(arr)) or isinstance(value, bool | str):
        raise ConfigError(
            message(path, value, "a number or a nested list of numbers (None or inf: no bound)")
        )
    if not np.all(np.isfinite(arr)) or np.any(np.abs(arr) >= 1e6):
        return None  # effectively unbounded
    if arr.ndim == 0 or np.all(arr == arr.flat[0]):
        return float(arr.flat[0])
    return arr.tolist()


def parse_spec(spec: Mapping[str, Any] | TensorSpec, path: str) -> TensorSpec:
    """Turn one spec dict (``type``, ``shape``, ``num_values``, bounds) into a ``TensorSpec``.

    Raises:
        ConfigError: unknown keys, unknown type, int without ``num_values`` where needed,
            bounds on bool or on an int with ``num_values``, or min >= max.
    """
    if isinstance(spec, TensorSpec):
        return spec
    if not isinstance(spec, Mapping):
        raise ConfigError(message(path, spec, "a spec dict with 'type' and 'shape'"))
    spec = dict(spec)
    if "num_actions" in spec:  # alias used by the reference's examples
        spec.setdefault("num_values", spec.pop("num_actions"))
    unknown = set(spec) - set(SPEC_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown spec key(s) {sorted(unknown)}; valid: {', '.join(SPEC_KEYS)}"
        )
    raw_type = spec.get("type", "float")
    kind = _TYPE_ALIASES.get(getattr(raw_type, "__name__", str(raw_type)))
    if kind is None:
        raise ConfigError(message(f"{path}.type", raw_type, "one of 'float', 'int', 'bool'"))
    shape = _as_shape(path, spec.get("shape", ()))
    num_values = _num_values(path, kind, spec.get("num_values"))
    low = _as_bound(f"{path}.min_value", spec.get("min_value"))
    high = _as_bound(f"{path}.max_value", spec.get("max_value"))
    _check_bounds(path, kind, num_values, low, high)
    return TensorSpec(kind, shape, num_values, low, high)  # type: ignore[arg-type]


def _num_values(path: str, kind: str, num_values: Any) -> int | None:
    if num_values is None:
        return None
    if kind != "int":
        raise ConfigError(message(f"{path}.num_values", num_values, "only for type 'int'"))
    if not is_int(num_values) or num_values < 1:
        raise ConfigError(message(f"{path}.num_values", num_values, "an int >= 1"))
    return int(num_values)


def _check_bounds(path: str, kind: str, num_values: int | None, low: Any, high: Any) -> None:
    if (low is not None or high is not None) and kind == "bool":
        raise ConfigError(message(f"{path}.min_value/max_value", (low, high), "no bounds on bool"))
    if (low is not None or high is not None) and num_values is not None:
        raise ConfigError(
            message(f"{path}.min_value/max_value", (low, high), "no bounds with num_values")
        )
    if low is not None and high is not None and np.any(np.asarray(low) >= np.asarray(high)):
        raise ConfigError(message(f"{path}.min_value", low, f"less than max_value {high}"))


def parse_specs(spec: Any, default: str) -> Specs:
    """Parse one unnamed spec (has ``type`` or ``shape``) or a dict of named specs.

    Args:
        spec: A spec dict, a dict of spec dicts, or an existing ``Specs``.
        default: Name of the single unnamed component: ``'state'`` or ``'action'``.
    """
    if isinstance(spec, Specs):
        return spec
    path = f"{default}s"
    if spec is None:
        raise ConfigError(f"{path}: missing; give a spec dict or pass environment=...")
    if isinstance(spec, TensorSpec):
        return Specs(((default, spec),), single=True)
    if not isinstance(spec, Mapping) or not spec:
        raise ConfigError(message(path, spec, "a spec dict or a dict of named spec dicts"))
    if "type" in spec or "shape" in spec:
        return Specs(((default, parse_spec(spec, path)),), single=True)
    items = []
    for name, sub in spec.items():
        if name in RESERVED or str(name).endswith("_mask"):
            raise ConfigError(message(f"{path}", name, "a name that is not reserved"))
        items.append((str(name), parse_spec(sub, f"{path}.{name}")))
    return Specs(tuple(items), single=False)


def mask_key(specs: Specs, name: str) -> str:
    """Key of the mask entry for int action ``name`` (``'action_mask'`` when unnamed)."""
    return f"{name}_mask"


_KINDS = {"float": "fiub", "int": "iub", "bool": "biu"}  # NumPy dtype kinds each type takes


def describe(spec: TensorSpec, batch_ndim: int = 0) -> str:
    """What a value of ``spec`` must be, for messages: ``finite floats of shape (4,)``."""
    dims = ["batch"] * batch_ndim + [str(d) for d in spec.shape]
    shape = f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"
    if spec.type == "float":
        kind = "finite floats"
    elif spec.type == "int" and spec.num_values is not None:
        kind = f"ints in [0, {spec.num_values})"
    else:
        kind = f"{spec.type}s"
    return f"{kind} of shape {shape}"


def check_array(path: str, spec: TensorSpec, value: Any, batch_ndim: int) -> np.ndarray:
    """Convert ``value`` to the spec's dtype and check kind, shape, finiteness and int range.

    Args:
        path: Name used in error messages (e.g. ``states.position``).
        spec: The component's spec.
        value: Array-like, shape ``(*batch, *spec.shape)``.
        batch_ndim: Number of leading batch axes expected (0 or 1).

    Raises:
        ConfigError: ``path: <value> is invalid; expected <describe(spec)>`` with the reason:
            a wrong dtype (strings, complex, objects, floats for ints), shape, NaN or inf, or
            an int out of range.
    """
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged nested lists
        arr = np.asarray(None)
    if arr.dtype.kind not in _KINDS[spec.type]:
        raise _bad(path, spec, value, batch_ndim, f"Got dtype {arr.dtype}")
    if arr.dtype != spec.dtype:
        arr = arr.astype(spec.dtype)
    if arr.shape[batch_ndim:] != spec.shape or arr.ndim != batch_ndim + len(spec.shape):
        raise _bad(path, spec, value, batch_ndim, f"Got shape {tuple(arr.shape)}")
    if spec.type == "float":
        if not np.logical_and.reduce(np.isfinite(arr), axis=None):  # .all() adds a Python layer
            raise _bad(path, spec, value, batch_ndim, "It contains NaN or inf")
    elif (
        spec.num_values is not None and arr.size and (arr.min() < 0 or arr.max() >= spec.num_values)
    ):
        raise _bad(path, spec, value, batch_ndim, f"Got values in [{arr.min()}, {arr.max()}]")
    return arr


def _bad(path: str, spec: TensorSpec, value: Any, batch_ndim: int, reason: str) -> ConfigError:
    return ConfigError(message(path, brief(value), describe(spec, batch_ndim), reason))
