"""Observers the agent notifies: saver, recorder, summarizer (built from their specs)."""

from __future__ import annotations

from typing import Any

from forceexp.errors import ConfigError
from forceexp.observers.base import Observer

__all__ = ["Observer", "build_observers"]


def build_observers(
    saver: Any = None, summarizer: Any = None, recorder: Any = None
) -> list[Observer]:
    """Build the observer list from ``saver``/``summarizer``/``recorder`` specs (None = off)."""
    observers: list[Observer] = []
    for name, spec in (("saver", saver), ("summarizer", summarizer), ("recorder", recorder)):
        if spec is None:
            continue
        if isinstance(spec, Observer):
            observers.append(spec)
            continue
        if name == "summarizer":
            from forceexp.observers.summarizer import Summarizer

            observers.append(Summarizer.from_spec(spec))
            continue
        raise ConfigError(f"{name}: {spec!r} is not supported yet")
    return observers
