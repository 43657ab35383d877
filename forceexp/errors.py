"""Error types and the one message format for bad input: path, given value, expectation, hint."""

from __future__ import annotations

import difflib
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
