"""Checkpoint files on disk: suffixes, atomic writes, the ``checkpoint.json`` index, pruning.

The file layer below both ``agents/persistence.py`` (what goes into a file) and
``observers/saver.py`` (when to save): it knows file names and the index, never agents.
Every file is written to a temp file and renamed; ``checkpoint.json`` lists the files written
in a directory (newest last) and ``latest`` names the newest.
"""

from __future__ import annotations

import json
import os
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

Format = Literal["checkpoint", "numpy", "hdf5"]

INDEX = "checkpoint.json"
SUFFIXES: dict[str, str] = {"checkpoint": ".pt", "numpy": ".npz", "hdf5": ".h5"}
FORMAT_OF_SUFFIX = {".pt": "checkpoint", ".npz": "numpy", ".h5": "hdf5", ".hdf5": "hdf5"}


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a fresh temp path beside ``path``, then rename it over ``path``.

    ``write`` creates the temp file itself, so it gets the usual permissions (umask).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_index(directory: Path) -> list[dict[str, Any]]:
    """Entries of ``checkpoint.json`` (oldest first); [] if absent, with a warning if corrupt."""
    path = directory / INDEX
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text())["checkpoints"]
        if not isinstance(entries, list):
            raise TypeError("checkpoints is not a list")
        return [e for e in entries if isinstance(e, dict) and "file" in e]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        warnings.warn(f"{path}: unreadable index ({exc}); scanning the directory", stacklevel=3)
        return []


def write_index(directory: Path, entries: list[dict[str, Any]]) -> None:
    """Write ``checkpoint.json`` atomically; ``latest`` names the last entry's file."""
    data = {"latest": entries[-1]["file"] if entries else None, "checkpoints": entries}
    atomic_write(directory / INDEX, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))


def register(
    path: Path,
    fmt: str,
    counters: Mapping[str, int],
    keep: int | None = None,
    owner: str | None = None,
) -> None:
    """Add ``path`` to its directory's index (replacing an entry of the same file), then prune.

    Only entries with the same ``owner`` (a saver's filename) are pruned, down to ``keep``
    (files deleted); entries of other owners and of manual saves stay.

    Args:
        path: The file just written, inside the indexed directory.
        fmt: Its format (``'checkpoint'``, ``'numpy'`` or ``'hdf5'``).
        counters: The agent's counters at save time, e.g. ``{'timesteps': 512, ...}``.
        keep: Number of files of ``owner`` kept (None keeps all).
        owner: Index tag of the periodic saver that wrote the file (None: a manual save).
    """
    directory = path.parent
    entries = [e for e in read_index(directory) if e["file"] != path.name]
    entry = {"file": path.name, "format": fmt, "time": time.time(), "owner": owner}
    entry.update({name: int(value) for name, value in counters.items()})
    entries.append(entry)
    if keep is not None and owner is not None:
        owned = [e for e in entries if e.get("owner") == owner]
        for old in owned[: max(0, len(owned) - keep)]:
            (directory / old["file"]).unlink(missing_ok=True)
            entries.remove(old)
    write_index(directory, entries)
