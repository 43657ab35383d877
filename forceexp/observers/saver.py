"""Saver: periodic checkpoints every N updates/episodes/timesteps/seconds, and one on close."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from forceexp.checkpoints import SUFFIXES, register
from forceexp.errors import ConfigError, message
from forceexp.observers.base import Observer

if TYPE_CHECKING:
    from forceexp.agents.agent import Agent

Unit = Literal["updates", "episodes", "timesteps", "seconds"]
UNITS = ("updates", "episodes", "timesteps", "seconds")


class Saver(Observer):
    """Writes a checkpoint whenever the ``unit`` counter advanced by ``frequency`` since the last.

    Files are ``<directory>/<filename>-<counter><suffix>`` (the counter of ``unit``, timesteps
    for ``'seconds'``), listed in ``<directory>/checkpoint.json``; only the newest
    ``max_checkpoints`` are kept. ``close`` saves once more if anything changed since the last
    save, so no progress is lost at the end.

    Args:
        directory: Folder of the checkpoints (created on the first save).
        frequency: Save interval, in ``unit`` (an int >= 1).
        unit: ``'updates'``, ``'episodes'``, ``'timesteps'`` or ``'seconds'`` (wall clock).
        max_checkpoints: Number of checkpoints kept (an int >= 1, or None to keep all).
        filename: File name stem.
        format: ``'checkpoint'`` (full state), ``'numpy'`` or ``'hdf5'`` (weights only).
        memory: Include the replay memory of replay-based agents (``'checkpoint'`` format) so
            a resumed run continues exactly (agents without one save as usual, so one saver
            config serves a sweep over agents); off by default, which keeps checkpoints small
            (a 1M-transition CartPole memory is ~50 MB).
    """

    def __init__(
        self,
        directory: str | Path,
        frequency: int = 10,
        unit: Unit = "updates",
        max_checkpoints: int | None = 10,
        filename: str = "agent",
        format: Literal["checkpoint", "numpy", "hdf5"] = "checkpoint",
        memory: bool = False,
    ) -> None:
        if not isinstance(directory, str | Path) or not str(directory):
            raise ConfigError(message("saver.directory", directory, "a folder path"))
        if not isinstance(frequency, int | float) or isinstance(frequency, bool) or frequency <= 0:
            raise ConfigError(message("saver.frequency", frequency, "a number > 0"))
        if unit not in UNITS:
            raise ConfigError(message("saver.unit", unit, f"one of {', '.join(UNITS)}"))
        if max_checkpoints is not None and (
            not isinstance(max_checkpoints, int) or max_checkpoints < 1
        ):
            raise ConfigError(message("saver.max_checkpoints", max_checkpoints, "an int >= 1"))
        if format not in SUFFIXES:
            raise ConfigError(message("saver.format", format, "'checkpoint', 'numpy' or 'hdf5'"))
        if not isinstance(filename, str) or not filename or "/" in filename:
            raise ConfigError(message("saver.filename", filename, "a file name without '/'"))
        self.directory = Path(directory)
        self.frequency, self.unit = frequency, unit
        if memory and format != "checkpoint":
            raise ConfigError(
                f"saver.memory: the replay memory is saved in format='checkpoint' only, "
                f"not {format!r}"
            )
        self.max_checkpoints, self.filename, self.format = max_checkpoints, filename, format
        self.memory = memory
        self.saved: list[str] = []
        #: called as ``listener(agent, path)`` after each checkpoint (a run's state beside it)
        self.listeners: list[Callable[[Agent, str], None]] = []
        self._next: float = frequency
        self._snapshot: tuple[int, int, int] = (0, 0, 0)

    def _counter(self, agent: Agent) -> float:
        if self.unit == "seconds":
            return time.monotonic()
        return getattr(agent, self.unit)

    def sync(self, agent: Agent) -> None:
        """Restart the interval from the agent's current counters (after attach or a load)."""
        self._next = self._counter(agent) + self.frequency
        self._snapshot = (agent.timesteps, agent.episodes, agent.updates)

    def attach(self, agent: Agent) -> None:
        """Start counting from the new agent's counters."""
        self.sync(agent)

    def save(self, agent: Agent) -> str:
        """Write one checkpoint now and restart the interval; returns its path.

        ``agent.save`` writes and indexes the file; it is then tagged with this saver's
        ``filename`` in ``checkpoint.json``, which prunes this saver's files to the newest
        ``max_checkpoints``.
        """
        append = "timesteps" if self.unit == "seconds" else self.unit
        memory = self.memory and hasattr(agent, "memory_state_dict")  # one saver config, any agent
        path = agent.save(self.directory, self.filename, self.format, append=append, memory=memory)
        counters = {name: getattr(agent, name) for name in ("timesteps", "episodes", "updates")}
        register(Path(path), self.format, counters, self.max_checkpoints, owner=self.filename)
        self.saved.append(path)
        self.sync(agent)
        for listener in self.listeners:
            listener(agent, path)
        return path

    def on_observe(
        self, agent: Agent, rewards: np.ndarray, terminals: np.ndarray, slots: np.ndarray
    ) -> None:
        """Timesteps and seconds units are checked here."""
        if self.unit == "timesteps":
            if agent.timesteps >= self._next:
                self.save(agent)
        elif self.unit == "seconds" and time.monotonic() >= self._next:
            self.save(agent)

    def on_episode(self, agent: Agent, slot: int, episode_return: float, length: int) -> None:
        """The episodes unit is checked here."""
        if self.unit == "episodes" and agent.episodes >= self._next:
            self.save(agent)

    def on_update(self, agent: Agent, metrics: dict[str, float]) -> None:
        """The updates unit is checked here."""
        if self.unit == "updates" and agent.updates >= self._next:
            self.save(agent)

    def close(self, agent: Agent) -> None:
        """Save a final checkpoint if the agent changed since the last one."""
        if (agent.timesteps, agent.episodes, agent.updates) != self._snapshot:
            self.save(agent)


def build_saver(spec: Any) -> Saver:
    """A Saver from a directory string/path or a dict of ``Saver`` arguments."""
    if isinstance(spec, Saver):
        return spec
    if isinstance(spec, str | Path):
        return Saver(directory=spec)
    if isinstance(spec, dict):
        try:
            return Saver(**spec)
        except TypeError as exc:
            raise ConfigError(f"saver: {exc}") from None
    raise ConfigError(message("saver", spec, "a directory or a dict(directory=..., ...)"))
