"""Checkpoint files on disk: suffixes, atomic writes, the ``checkpoint.json`` index, pruning.

The file layer below both ``agents/persistence.py`` (what goes into a file) and
``observers/saver.py`` (when to save): it knows file names and the index, never agents.
Every file is written to a temp file and renamed; ``checkpoint.json`` lists the files written
in a directory (newest last, each with its SHA-256) and ``latest`` names the newest. Names from
the index are trusted only if they stay inside the directory; temp files of killed saves are
removed by the next save.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from forceexp.errors import CheckpointError, message

Format = Literal["checkpoint", "numpy", "hdf5"]

INDEX = "checkpoint.json"
SUFFIXES: dict[str, str] = {"checkpoint": ".pt", "numpy": ".npz", "hdf5": ".h5"}
FORMAT_OF_SUFFIX = {".pt": "checkpoint", ".npz": "numpy", ".h5": "hdf5", ".hdf5": "hdf5"}
# ``.<name>.<pid>.<uuid>.tmp``; files of older versions had no pid
TMP = re.compile(r"^\..+?(?:\.(?P<pid>\d+))?\.[0-9a-f]{32}\.tmp$")

log = logging.getLogger(__name__)
_writing: set[Path] = set()  # temp files this process is writing right now


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a fresh temp path beside ``path``, then rename it over ``path``.

    ``write`` creates the temp file itself, so it gets the usual permissions (umask). Temp files
    left in the folder by killed saves are removed first (``clean_temp_files``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_temp_files(path.parent)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    _writing.add(tmp)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _writing.discard(tmp)


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # cannot tell cheaply: keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_temp_files(directory: Path) -> list[Path]:
    """Remove temp files of saves that were killed midway; return what was removed.

    A temp file is removed when the process named in it is gone (or is this one, and is not
    writing it now); temp files of live writers in other processes are left alone.
    """
    removed = []
    for path in directory.iterdir() if directory.is_dir() else ():
        match = TMP.match(path.name)
        if match is None or path in _writing:
            continue
        pid = match.group("pid")
        if pid is not None and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("Removed %d temp file(s) of interrupted saves in %s", len(removed), directory)
    return removed


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def contained(directory: Path, name: Any) -> Path:
    """``directory / name`` for a plain file name that resolves inside ``directory``.

    Raises:
        CheckpointError: ``name`` is not a string, has a path separator or ``..``, is absolute,
            or resolves (through links) outside ``directory``.
    """
    expected = f"a file name inside {directory}"
    where = f"{directory / INDEX}: file"
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
        raise CheckpointError(message(where, name, expected))
    if "/" in name or "\\" in name or "\x00" in name:
        raise CheckpointError(message(where, name, expected))
    path = directory / name
    if not path.resolve().is_relative_to(directory.resolve()):
        raise CheckpointError(message(where, name, expected, "it resolves outside the folder"))
    return path


def read_index(directory: Path) -> list[dict[str, Any]]:
    """Entries of ``checkpoint.json`` (oldest first); [] if absent, with a warning if corrupt."""
    path = directory / INDEX
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text())["checkpoints"]
        if not isinstance(entries, list):
            raise TypeError("checkpoints is not a list")
    except (ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        warnings.warn(f"{path}: unreadable index ({exc}); scanning the directory", stacklevel=3)
        return []
    safe = []
    for entry in entries:
        if not isinstance(entry, dict) or "file" not in entry:
            continue
        try:
            contained(directory, entry["file"])
        except CheckpointError as exc:
            warnings.warn(f"ignoring an index entry: {exc}", stacklevel=3)
            continue
        safe.append(entry)
    return safe


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

    Only entries with the same ``owner`` (a saver's filename) are pruned, down to ``keep``;
    a pruned entry's file is deleted only if its name is one this saver writes
    (``<owner>-<counter><suffix>`` inside the folder). Entries of other owners and of manual
    saves stay. The entry records the file's SHA-256, verified on load.

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
    entry["sha256"] = sha256(path)
    entries.append(entry)
    if keep is not None and owner is not None:
        written = re.compile(rf"^{re.escape(owner)}(?:-\d+)?\.(?:pt|npz|h5)$")
        owned = [e for e in entries if e.get("owner") == owner]
        for old in owned[: max(0, len(owned) - keep)]:
            if written.match(old["file"]) and old["file"] != path.name:
                contained(directory, old["file"]).unlink(missing_ok=True)
            entries.remove(old)
    write_index(directory, entries)


def recorded_sha256(directory: Path, name: str) -> str | None:
    """The SHA-256 the index records for file ``name`` (None if not indexed or not recorded)."""
    for entry in read_index(directory):
        if entry["file"] == name and isinstance(entry.get("sha256"), str):
            return entry["sha256"]
    return None
