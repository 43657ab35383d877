"""Save and load agents: write and index files, find the best one to load, fall back.

Files are written atomically and listed in ``checkpoint.json`` (``forceexp.checkpoints``).
Loading takes an explicit file, else the index's newest entry, else the highest
``<name>-<counter>`` file; file contents are in ``formats``. A file that cannot be read, does
not match the SHA-256 in the index, holds non-finite weights or cannot be applied to the agent
is skipped with a warning naming it and the reason, and the next older one is tried.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forceexp.agents.formats import (
    COUNTERS,
    FORMAT_VERSION,
    READERS,
    WRITERS,
    Counter,
    Payload,
    check_compatible,
    check_finite,
    flatten_weights,
    set_rng_state,
)
from forceexp.checkpoints import (
    FORMAT_OF_SUFFIX,
    INDEX,
    SUFFIXES,
    Format,
    atomic_write,
    contained,
    read_index,
    recorded_sha256,
    register,
    sha256,
)
from forceexp.errors import CheckpointError, ConfigError, message

if TYPE_CHECKING:
    from forceexp.agents.agent import Agent

__all__ = ["FORMAT_VERSION", "SUFFIXES", "flatten_weights", "load", "save"]

log = logging.getLogger(__name__)


def save(
    agent: Agent,
    directory: str | Path,
    filename: str | None = None,
    format: Format = "checkpoint",
    append: Counter | None = None,
    memory: bool = False,
) -> str:
    """Write ``agent`` to ``directory/<filename>[-<counter>]<suffix>`` and index it.

    Args:
        agent: The agent to save.
        directory: Target folder (created if missing).
        filename: File name without suffix (default ``'agent'``).
        format: ``'checkpoint'`` (full state, ``.pt``), ``'numpy'`` (``.npz``) or ``'hdf5'``
            (``.h5``).
        append: Counter whose value is appended to the name: ``'timesteps'``, ``'episodes'``
            or ``'updates'``.
        memory: Also write the replay memory (replay-based agents, ``'checkpoint'`` only), so
            a resumed run continues exactly; off by default to keep checkpoints small.

    Returns:
        The path written.
    """
    if format not in WRITERS:
        raise ConfigError(message("save.format", format, "'checkpoint', 'numpy' or 'hdf5'"))
    if memory and format != "checkpoint":
        raise ConfigError(
            f"save.memory: the replay memory is saved in format='checkpoint' only, not {format!r}"
        )
    if memory and not hasattr(agent, "memory_state_dict"):
        raise ConfigError(f"save.memory: agent {agent.name!r} has no replay memory")
    if append is not None and append not in COUNTERS:
        expected = "None, 'timesteps', 'episodes' or 'updates'"
        raise ConfigError(message("save.append", append, expected))
    name = filename or "agent"
    if append is not None:
        name = f"{name}-{int(getattr(agent, append))}"
    directory = Path(directory)
    path = directory / f"{name}{SUFFIXES[format]}"
    atomic_write(path, lambda tmp: WRITERS[format](agent, tmp, memory))
    counters = {name: int(getattr(agent, name)) for name in COUNTERS}
    register(path, format, counters)
    return str(path)


# ---------------------------------------------------------------------------- finding files
def _format_of(path: Path, format: str | None) -> str:
    fmt = FORMAT_OF_SUFFIX.get(path.suffix)
    if fmt is None:
        raise CheckpointError(f"{path}: unknown file type; expected .pt, .npz, .h5 or .hdf5")
    if format is not None and format != fmt:
        raise ConfigError(f"load: {path.name} is a {fmt} file but format={format!r} was given")
    return fmt


def _scan(directory: Path, stem: str, formats: list[str]) -> list[Path]:
    """Files ``<stem>[-<int>]<suffix>`` of ``formats``, best (highest counter) first."""
    pattern = re.compile(rf"^{re.escape(stem)}(?:-(\d+))?(\.[a-z0-9]+)$")
    found = []
    for path in directory.iterdir() if directory.is_dir() else ():
        match = pattern.match(path.name)
        if match and FORMAT_OF_SUFFIX.get(match.group(2)) in formats:
            try:
                contained(directory, path.name)  # e.g. a link leading out of the folder
            except CheckpointError as exc:
                warnings.warn(f"ignoring {path.name}: {exc}", stacklevel=3)
                continue
            found.append((int(match.group(1) or -1), path.stat().st_mtime, path))
    kinds = {FORMAT_OF_SUFFIX[p.suffix] for _, _, p in found}
    if len(kinds) > 1:
        raise ConfigError(
            f"load: {directory} holds {sorted(kinds)} files named {stem!r}; pass format="
        )
    return [path for *_, path in sorted(found, key=lambda f: f[:2], reverse=True)]


def candidates(directory: Path, filename: str | None, format: str | None) -> list[Path]:
    """Files to try, best first: an explicit file, else the index (newest first), else a scan."""
    formats = [format] if format is not None else list(SUFFIXES)
    if filename is not None:
        path = directory / filename
        if path.suffix in FORMAT_OF_SUFFIX or path.is_file():
            return [path]
        exact = [directory / f"{filename}{SUFFIXES[f]}" for f in formats]
        exact = [p for p in exact if p.exists()]
        if len(exact) > 1:
            raise ConfigError(f"load: {[p.name for p in exact]} all exist; pass format=")
        return exact or _scan(directory, filename, formats)
    entries = [e for e in read_index(directory) if e.get("format") in formats]
    if entries:
        return [contained(directory, e["file"]) for e in reversed(entries)]
    return _scan(directory, "agent", formats)


def read_file(path: Path, format: str | None) -> Payload:
    """Read one file: check its SHA-256 against the index (if listed), decode, check weights.

    Raises:
        CheckpointError: for any failure, naming the file and the reason.
    """
    if not path.exists():
        raise CheckpointError(f"{path}: listed in {INDEX} but missing")
    fmt = _format_of(path, format)
    if fmt == "hdf5" and not _check_recorded_sha256(path):
        _probe_hdf5(path)  # the HDF5 C library can crash on corrupt input: never in this process
    try:
        payload = READERS[fmt](path)
    except CheckpointError:
        raise
    except Exception as exc:  # any other failure of a reader is a corrupt file too
        raise CheckpointError(f"{path}: corrupt file ({type(exc).__name__}: {exc})") from None
    check_finite(payload.state, path)
    _check_recorded_sha256(path)
    return payload


def _check_recorded_sha256(path: Path) -> bool:
    """Check ``path`` against the SHA-256 in its folder's index; whether one was recorded."""
    recorded = recorded_sha256(path.parent, path.name)
    if recorded is not None and sha256(path) != recorded:
        raise CheckpointError(
            f"{path}: truncated or corrupt file (SHA-256 differs from the one in {INDEX})"
        )
    return recorded is not None


#: Reads every dataset of an HDF5 file, as ``formats._read_hdf5`` does (exit 0 when it can).
_HDF5_PROBE = (
    "import sys, h5py\n"
    "with h5py.File(sys.argv[1], 'r') as f:\n"
    "    f.visititems(lambda n, o: o[()] if isinstance(o, h5py.Dataset) else None)\n"
    "    dict(f.attrs)\n"
)


def _probe_hdf5(path: Path, timeout: float = 60.0) -> None:
    """Parse an unindexed ``.h5`` in a child process first: a crash there is a clear error here.

    A bit flip can make the HDF5 C library segfault, which no ``try`` catches; a file whose
    digest ``checkpoint.json`` records is verified before parsing instead (no child needed).
    """
    try:
        done = subprocess.run(
            [sys.executable, "-c", _HDF5_PROBE, str(path)],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CheckpointError(
            f"{path}: corrupt HDF5 file (reading it hung for {timeout:g} s)"
        ) from None
    if done.returncode < 0:
        raise CheckpointError(
            f"{path}: corrupt HDF5 file (the HDF5 library crashed reading it: "
            f"signal {-done.returncode})"
        )


def read(directory: Path, filename: str | None, format: str | None) -> tuple[Path, Payload]:
    """Read the best candidate; a corrupt one is skipped with a warning unless named explicitly."""
    for path, payload in readable(directory, filename, format):
        return path, payload
    raise AssertionError("readable() raises when nothing is readable")  # pragma: no cover


def readable(directory: Path, filename: str | None, format: str | None) -> Any:
    """Yield ``(path, payload)`` for each readable candidate, best first, warning about the rest.

    Raises:
        CheckpointError: when none is left (naming every file and its reason), or at once for
            an explicitly named file.
    """
    if format is not None and format not in READERS:
        raise ConfigError(message("load.format", format, "'checkpoint', 'numpy' or 'hdf5'"))
    found = candidates(directory, filename, format)
    if not found:
        what = f"{filename!r}" if filename else "no checkpoint"
        raise CheckpointError(f"{directory}: {what} found (format={format})")
    explicit = len(found) == 1 and filename is not None
    errors = []
    for path in found:
        try:
            payload = read_file(path, format)
        except CheckpointError as exc:
            if explicit:
                raise
            errors.append(str(exc))
            warnings.warn(f"skipping {path.name}: {exc}", stacklevel=3)
            continue
        reason = yield path, payload
        if reason is not None:  # the caller could not apply it: go on to the next
            errors.append(str(reason))
    raise CheckpointError(f"{directory}: no readable checkpoint; " + "; ".join(errors))


# ---------------------------------------------------------------------------- loading
def restore(agent: Agent, path: Path, payload: Payload) -> None:
    """Check shapes, then load state, counters and (checkpoints) RNG states into ``agent``.

    Raises:
        CheckpointError: for any failure to apply the payload, naming the file and the reason.
    """
    try:
        _apply(agent, path, payload)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"{path}: cannot be applied to the agent ({type(exc).__name__}: {exc})"
        ) from None


def _apply(agent: Agent, path: Path, payload: Payload) -> None:
    check_compatible(agent, payload.state, path)
    counters = {}
    for name in COUNTERS:
        value = payload.counters.get(name)
        if value is not None:
            if type(value) is not int or value < 0:
                raise CheckpointError(message(f"{path}: counters.{name}", value, "an int >= 0"))
            counters[name] = value
    agent.load_state_dict(payload.state)
    for name, value in counters.items():
        setattr(agent, name, value)
    if payload.memory is not None:
        agent.load_memory_state_dict(payload.memory)
    if payload.rng is not None:
        set_rng_state(payload.rng)
    from forceexp.observers.saver import Saver

    for observer in agent.observers:
        if isinstance(observer, Saver):
            observer.sync(agent)
    restored = sorted(key for key in payload.state if key != "policy") or ["-"]
    log.info(
        "Restored %s: %d weight tensors, also %s, counters %s%s",
        path,
        len(flatten_weights(payload.state)),
        ", ".join(restored),
        payload.counters,
        ", RNG states" if payload.rng is not None else "",
    )


def _agent_spec(spec: dict[str, Any], overrides: dict[str, Any], path: Path) -> dict[str, Any]:
    unsaved = [key for key in spec.pop("__unsaved__", []) if key not in overrides]
    if unsaved:
        raise ConfigError(
            f"{path}: agent spec keys {unsaved} were not JSON when saved; pass them to "
            f"Agent.load, e.g. Agent.load(..., {unsaved[0]}=...)"
        )
    given = overrides.pop("agent", None)
    if given is not None and given != spec.get("agent"):
        raise ConfigError(message("load.agent", given, f"{spec.get('agent')!r} (as saved)"))
    return {**spec, **overrides}


def check_environment(spec: dict[str, Any], environment: Any, path: Path) -> None:
    """Refuse an ``environment`` whose state or action specs differ from the saved ones.

    Raises:
        ConfigError: ``load.environment.states: <given> is invalid; expected the saved ...``.
    """
    from forceexp.environments import create
    from forceexp.specs import parse_specs

    env = create(environment)
    try:
        given = {"states": env.states(), "actions": env.actions()}
    finally:
        if env is not environment:
            env.close()
    for key in ("states", "actions"):
        saved = spec.get(key)
        if saved is not None and parse_specs(saved, key[:-1]) != parse_specs(given[key], key[:-1]):
            raise ConfigError(
                message(
                    f"load.environment.{key}",
                    given[key],
                    f"the {key} the agent was saved with in {path}: {saved!r}",
                    "The agent was trained on another environment; load it with that one",
                )
            )


def load(
    directory: str | Path | None,
    filename: str | None = None,
    format: Format | None = None,
    environment: Any = None,
    **overrides: Any,
) -> Agent:
    """Create the saved agent and restore its state; see ``Agent.load``."""
    from forceexp.agents.agent import Agent

    if directory is None:
        raise ConfigError("load: directory= is required (a folder or a saved file)")
    directory = Path(directory)
    if directory.is_file():
        directory, filename = directory.parent, directory.name
    files = readable(directory, filename, format)
    path, payload = next(files)
    while True:
        spec = _agent_spec(dict(payload.spec), dict(overrides), path)
        if environment is not None:
            check_environment(spec, environment, path)
        agent = Agent.create(spec, environment=environment)
        try:
            restore(agent, path, payload)
            return agent
        except CheckpointError as exc:
            agent.close()
            if filename is not None:
                raise
            warnings.warn(f"skipping {path.name}: {exc}", stacklevel=2)
            path, payload = files.send(exc)
        except BaseException:
            agent.close()
            raise


def resume_directory(path: str | Path) -> Path:
    """The checkpoint folder of a run dir (``<run>/checkpoints``) or a checkpoint folder itself.

    Meant for ``train.py +resume=<run dir or checkpoint dir>``.
    """
    path = Path(path)
    for folder in (path / "checkpoints", path):
        if (folder / INDEX).exists():
            return folder
    raise CheckpointError(f"resume: no {INDEX} in {path} or {path / 'checkpoints'}")
