"""Error types and the one message format for bad input: path, given value, expectation, hint."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable
from typing import Any


class ForceexpError(Exception):
    """Base class of every error forceexp raises on purpose."""


class ConfigError(ForceexpError, ValueError):
    """A configuration, spec or argument value is invalid."""


class ProtocolError(ForceexpError, RuntimeError):
    """The act/observe call order (or a remote protocol) was violated."""


class CheckpointError(ForceexpError, OSError):
    """A checkpoint, weights or trace file is missing, truncated, corrupt or incompatible."""


def message(path: str, given: Any, expected: str, hint: str | None = None) -> str:
    """Format a bad-input message as ``path: <given> is invalid; expected <expected>. <hint>``."""
    text = f"{path}: {given!r} is invalid; expected {expected}"
    return f"{text}. {hint}" if hint else text


def unknown_name(path: str, name: str, valid: Iterable[str], kind: str = "name") -> ConfigError:
    """Build the error for an unknown registry key, with a did-you-mean hint and the valid keys."""
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(f"{path}: unknown {kind} {name!r}; {hint}Valid: {', '.join(valid)}")


class _Shown(str):
    """A string shown as is by ``message`` (no quotes)."""

    def __repr__(self) -> str:
        return str(self)


def brief(value: Any, limit: int = 8) -> Any:
    """A short stand-in for ``value`` in messages: large arrays as their shape and dtype."""
    size, shape, dtype = (getattr(value, key, None) for key in ("size", "shape", "dtype"))
    if isinstance(size, int) and size > limit and shape is not None:
        return _Shown(f"array(shape={tuple(shape)}, dtype={dtype})")
    text = " ".join(repr(value).split())  # one line
    return _Shown(text if len(text) <= 120 else f"{text[:117]}...")


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(path: str, value: Any, minimum: int | None = None, optional: bool = False) -> None:
    """Raise ConfigError unless ``value`` is an int >= ``minimum`` (or None when ``optional``).

    Raises:
        ConfigError: ``path: <value> is invalid; expected an int >= <minimum> [or None]``.
    """
    if optional and value is None:
        return
    if not is_int(value) or (minimum is not None and value < minimum):
        expected = "an int" if minimum is None else f"an int >= {minimum}"
        raise ConfigError(message(path, value, expected + (" or None" if optional else "")))


def check_number(path: str, value: Any, low: float, high: float) -> None:
    """Raise ConfigError unless ``value`` is a number (not a bool) in ``[low, high]``.

    Raises:
        ConfigError: ``path: <value> is invalid; expected a number in [<low>, <high>]``.
    """
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not number or not low <= value <= high:
        raise ConfigError(message(path, value, f"a number in [{low}, {high}]"))


def check_bounds(path: str, bounds: Any) -> tuple[float, float] | None:
    """``bounds`` as a ``(lower, upper)`` float tuple, or None (off).

    Raises:
        ConfigError: ``path: <bounds> is invalid; expected (lower, upper), lower <= upper``.
    """
    if bounds is None:
        return None
    if len(bounds) != 2 or not bounds[0] <= bounds[1]:
        raise ConfigError(message(path, bounds, "(lower, upper), lower <= upper"))
    return (float(bounds[0]), float(bounds[1]))


class TensorforceError(ConfigError):
    """Tensorforce's error class, for environment code written to its interface.

    ``raise TensorforceError.value(name='execute', argument='actions', value=a)`` runs as in
    Tensorforce. forceexp itself raises ``ConfigError`` / ``ProtocolError``; catch
    ``ForceexpError`` to catch all of them.
    """

    @classmethod
    def value(
        cls,
        name: str,
        argument: str,
        value: Any,
        condition: str | None = None,
        hint: str | None = None,
    ) -> TensorforceError:
        """The error for an invalid ``argument`` value of ``name`` (Tensorforce's factory)."""
        expected = "a valid value" if condition is None else f"a valid value when {condition}"
        return cls(message(f"{name}.{argument}", brief(value), expected, hint))
