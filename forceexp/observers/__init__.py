"""Observers the agent notifies: saver, recorder, summarizer (built from their specs)."""

from __future__ import annotations

from typing import Any

from forceexp.errors import ConfigError
from forceexp.observers.base import Observer

__all__ = ["Observer", "build_observers"]


def _build(name: str, spec: Any) -> Observer:
    """Build one observer from its spec; modules are imported only when used."""
    if name == "saver":
        from forceexp.observers.saver import build_saver

        return build_saver(spec)
    if name == "recorder":
        from forceexp.observers.recorder import Recorder

        return Recorder.from_spec(spec)
    if name == "summarizer":
        from forceexp.observers.summarizer import Summarizer

        return Summarizer.from_spec(spec)
    raise ConfigError(f"{name}: unknown observer kind (valid: saver, summarizer, recorder)")


def build_observers(
    saver: Any = None, summarizer: Any = None, recorder: Any = None
) -> list[Observer]:
    """Build the observer list from ``saver``/``summarizer``/``recorder`` specs (None = off)."""
    observers: list[Observer] = []
    for name, spec in (("saver", saver), ("summarizer", summarizer), ("recorder", recorder)):
        if spec is None:
            continue
        observers.append(spec if isinstance(spec, Observer) else _build(name, spec))
    return observers
