"""Recorder: writes/reads .npz traces (states, masks, actions, rewards, terminals) for pretrain.

File layout (format version 1), one compressed ``.npz`` per recorded episode, named
``trace-<episode index, 9 digits>.npz`` so names sort by episode:

- ``states/<name>``: ``(T, *shape)`` raw states (the unnamed state is ``states/state``);
- ``masks/<action>``: optional ``(T, *shape, num_values)`` bool masks of int actions;
- ``actions/<name>``: ``(T, *shape)`` actions as the environment received them
  (the unnamed action is ``actions/action``);
- ``reward``: ``(T,)`` float32; ``terminal``: ``(T,)`` int64, 0 inside an episode, 1
  (terminated) or 2 (truncated) at its last step; a file may hold several episodes back to back
  but must end with a non-zero terminal;
- ``metadata``: JSON text as a uint8 array (a 0-d str array is accepted when reading):
  ``format_version``, ``states`` and ``actions`` specs.

Files are loaded with ``np.load(allow_pickle=False)``: no pickled objects are ever read.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from forceexp.errors import CheckpointError, ConfigError, message
from forceexp.observers.base import Observer
from forceexp.specs import Specs, TensorSpec, check_array, parse_specs

if TYPE_CHECKING:
    from forceexp.agents.agent import Agent

FORMAT_VERSION = 1
PREFIX, SUFFIX = "trace-", ".npz"
RECORDER_KEYS = ("directory", "frequency", "start", "max_traces")


class Trace(NamedTuple):
    """One loaded trace file: arrays ``(T, ...)`` checked against the agent's specs."""

    path: Path
    states: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    actions: dict[str, np.ndarray]
    reward: np.ndarray
    terminal: np.ndarray
    #: recurrent internals acted with, ``{layer path: (T, *shape)}`` (``Agent.experience``)
    internals: dict[str, np.ndarray] = {}  # never mutated


def trace_path(directory: str | os.PathLike, episode_index: int) -> Path:
    """Path of the trace of episode ``episode_index`` (``trace-000000123.npz``)."""
    return Path(directory) / f"{PREFIX}{int(episode_index):09d}{SUFFIX}"


def list_traces(directory: str | os.PathLike) -> list[Path]:
    """Trace files (``*.npz``) in ``directory``, sorted by name (= by episode for ours)."""
    return sorted(p for p in Path(directory).glob(f"*{SUFFIX}") if p.is_file())


def _named(values: Any, default: str) -> dict[str, np.ndarray]:
    if isinstance(values, Mapping):
        return {str(name): np.asarray(value) for name, value in values.items()}
    return {default: np.asarray(values)}


def _infer_specs(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    kinds = {"b": "bool", "i": "int", "u": "int", "f": "float"}
    return {
        name: {"type": kinds.get(a.dtype.kind, "float"), "shape": list(a.shape[1:])}
        for name, a in arrays.items()
    }


def write_trace(
    directory: str | os.PathLike,
    episode_index: int,
    states: Any,
    actions: Any,
    rewards: Any,
    terminals: Any,
    masks: Mapping[str, Any] | None = None,
    state_specs: Any = None,
    action_specs: Any = None,
) -> Path:
    """Write one trace file atomically; use it to record any policy (a scripted expert, a human).

    Args:
        directory: Folder of the traces (created if missing).
        episode_index: Index in the file name (``trace-<9 digits>.npz``); names sort by it.
        states: ``(T, *shape)`` array for a single unnamed state, or a dict of named arrays.
        actions: ``(T, *shape)`` array for a single unnamed action, or a dict of named arrays.
        rewards: ``(T,)`` rewards.
        terminals: ``(T,)`` terminals (0 inside an episode, 1 or 2 at its last step).
        masks: Optional ``{action: (T, *shape, num_values) bool}`` masks of int actions.
        state_specs: Specs stored in the metadata (default: inferred from the arrays).
        action_specs: Same for actions.

    Returns:
        The written path.
    """
    states, actions = _named(states, "state"), _named(actions, "action")
    arrays = {f"states/{name}": value for name, value in states.items()}
    arrays.update({f"masks/{name}": np.asarray(m, dtype=bool) for name, m in (masks or {}).items()})
    arrays.update({f"actions/{name}": value for name, value in actions.items()})
    arrays["reward"] = np.asarray(rewards, dtype=np.float32).reshape(-1)
    arrays["terminal"] = np.asarray(terminals).astype(np.int64).reshape(-1)
    metadata = {
        "format_version": FORMAT_VERSION,
        "states": _spec_dict(state_specs, states, "state"),
        "actions": _spec_dict(action_specs, actions, "action"),
    }
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    path = trace_path(directory, episode_index)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _spec_dict(specs: Any, arrays: dict[str, np.ndarray], default: str) -> dict[str, Any]:
    if specs is None:
        return _infer_specs(arrays)
    parsed = parse_specs(specs, default)
    return {name: spec.to_dict() for name, spec in parsed.items}


# ---------------------------------------------------------------------- reading


def _key(data: Mapping[str, np.ndarray], path: Path, key: str, single: str | None) -> np.ndarray:
    """Array ``key``, accepting the reference's unnamed ``states``/``actions`` layout."""
    if key in data:
        return data[key]
    if single is not None and single in data:
        return data[single]
    raise CheckpointError(f"{path}: missing key {key!r}; keys in the file: {sorted(data)}")


def _check_metadata(path: Path, data: Mapping[str, np.ndarray]) -> None:
    if "metadata" not in data:
        return
    try:
        raw = data["metadata"]
        text = str(raw.item()) if raw.dtype.kind == "U" else raw.astype(np.uint8).tobytes().decode()
        metadata = json.loads(text)
        version = int(metadata.get("format_version", 1))
    except (ValueError, AttributeError, TypeError):
        raise CheckpointError(f"{path}: key 'metadata' is not valid JSON text") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: trace format_version {version} is newer than supported {FORMAT_VERSION}"
        )


def _check_component(path: Path, key: str, spec: TensorSpec, value: np.ndarray, steps: int):
    try:
        arr = check_array(key, spec, value, 1)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if arr.shape[0] != steps:
        raise CheckpointError(f"{path}: key {key!r} has {arr.shape[0]} steps, 'terminal' {steps}")
    return arr


def _check_mask(path: Path, key: str, spec: TensorSpec, value: np.ndarray, steps: int):
    expected = (steps, *spec.shape, spec.num_values)
    if value.dtype != np.bool_ or value.shape != expected:
        raise CheckpointError(
            f"{path}: key {key!r} must be bool of shape {expected}; got "
            f"{value.dtype.name} {tuple(value.shape)}"
        )
    if not value.any(-1).all():
        raise CheckpointError(f"{path}: key {key!r} has a step where no value is allowed")
    return value


def _check_terminal(path: Path, data: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    terminal, reward = _key(data, path, "terminal", None), _key(data, path, "reward", None)
    if terminal.ndim != 1 or terminal.dtype.kind not in "iub" or len(terminal) == 0:
        raise CheckpointError(
            f"{path}: key 'terminal' must be a non-empty 1-D int array; got "
            f"{terminal.dtype.name} {tuple(terminal.shape)}"
        )
    terminal = terminal.astype(np.int64)
    if ((terminal < 0) | (terminal > 2)).any():
        raise CheckpointError(f"{path}: key 'terminal' has values outside 0, 1, 2")
    if terminal[-1] == 0:
        raise CheckpointError(
            f"{path}: key 'terminal': the last episode has no terminal (last value is 0); "
            "traces must hold whole episodes"
        )
    if reward.shape != terminal.shape or reward.dtype.kind not in "fiu":
        raise CheckpointError(
            f"{path}: key 'reward' must be numbers of shape {terminal.shape}; got "
            f"{reward.dtype.name} {tuple(reward.shape)}"
        )
    reward = reward.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(reward))
    if len(bad):
        raise CheckpointError(
            f"{path}: key 'reward' has a non-finite value ({reward[bad[0]]}) at step {bad[0]}; "
            "expected finite numbers"
        )
    return terminal, reward


def read_trace(path: str | os.PathLike, state_specs: Any, action_specs: Any) -> Trace:
    """Load one trace and validate it against the agent's specs.

    Float and int arrays of any dtype are accepted and converted to the spec's dtype.

    Args:
        path: The ``.npz`` file.
        state_specs: The agent's state specs (``Specs`` or spec dicts).
        action_specs: The agent's action specs.

    Raises:
        CheckpointError: unreadable file, missing or unexpected key, shape/dtype mismatch, bad
            masks, or an episode without a terminal; the message names the file and the key.
    """
    path = Path(path)
    states_spec: Specs = parse_specs(state_specs, "state")
    actions_spec: Specs = parse_specs(action_specs, "action")
    try:
        with zipfile.ZipFile(path) as archive:  # np.load does not check CRC-32s
            broken = archive.testzip()
        if broken is not None:
            raise ValueError(f"member {broken!r} fails its CRC-32 check")
        with np.load(path, allow_pickle=False) as npz:
            data = {key: npz[key] for key in npz.files}
    except Exception as exc:  # BadZipFile, zlib.error, OSError, ValueError, EOFError, ...
        raise CheckpointError(
            f"{path}: not a readable .npz trace ({type(exc).__name__}: {exc})"
        ) from None
    try:
        return _validate(path, data, states_spec, actions_spec)
    except CheckpointError:
        raise
    except Exception as exc:  # any other surprise in a hostile file still names the file
        raise CheckpointError(f"{path}: invalid trace ({type(exc).__name__}: {exc})") from None


def _validate(path: Path, data: dict[str, np.ndarray], states_spec: Specs, actions_spec: Specs):
    """Check a loaded trace's keys against the specs and build the ``Trace``."""
    _check_metadata(path, data)
    terminal, reward = _check_terminal(path, data)
    steps = len(terminal)
    states = {
        name: _check_component(
            path,
            f"states/{name}",
            spec,
            _key(data, path, f"states/{name}", "states" if states_spec.single else None),
            steps,
        )
        for name, spec in states_spec.items
    }
    actions = {
        name: _check_component(
            path,
            f"actions/{name}",
            spec,
            _key(data, path, f"actions/{name}", "actions" if actions_spec.single else None),
            steps,
        )
        for name, spec in actions_spec.items
    }
    masks = {}
    for name, spec in actions_spec.items:
        key = f"masks/{name}"
        if key in data and spec.type == "int" and spec.num_values is not None:
            masks[name] = _check_mask(path, key, spec, data[key], steps)
    _check_unexpected(path, data, states_spec, actions_spec)
    return Trace(path, states, masks, actions, reward, terminal)


def _check_unexpected(path: Path, data: Mapping[str, Any], states: Specs, actions: Specs) -> None:
    known = {"terminal", "reward", "metadata", "states", "actions"}
    known |= {f"states/{n}" for n in states} | {f"actions/{n}" for n in actions}
    known |= {f"masks/{n}" for n, s in actions.items if s.type == "int" and s.num_values}
    unexpected = sorted(set(data) - known)
    if unexpected:
        raise CheckpointError(
            f"{path}: unexpected key {unexpected[0]!r} (not in the agent's specs); "
            f"expected keys: {sorted(known - {'states', 'actions'})}"
        )


# ---------------------------------------------------------------------- recording


class _Episode:
    """Per-slot buffer of one running episode."""

    def __init__(self) -> None:
        self.states: list[dict[str, np.ndarray]] = []
        self.masks: list[dict[str, np.ndarray]] = []
        self.actions: list[dict[str, np.ndarray]] = []
        self.rewards: list[float] = []
        self.terminals: list[int] = []

    def stacked_masks(self, specs: Specs) -> dict[str, np.ndarray]:
        names = {name for step in self.masks for name in step}
        out = {}
        for name in names:
            spec = specs[name]
            full = np.ones((*spec.shape, spec.num_values), dtype=bool)
            out[name] = np.stack([step.get(name, full) for step in self.masks])
        return out


class Recorder(Observer):
    """Writes the agent's non-independent episodes as traces (one file per recorded episode).

    Episodes are counted from 0 over all parallel slots in the order they end. Episode ``i`` is
    recorded when ``i >= start`` and ``(i - start) % frequency == 0``. Evaluation (independent)
    acts are never recorded. States are the raw states passed to ``act`` (before
    normalization); actions are what ``act`` returned.

    Args:
        directory: Folder of the trace files (created if missing).
        frequency: Record every ``frequency``-th episode (>= 1).
        start: Episodes to skip before the first recorded one (>= 0).
        max_traces: Keep at most this many trace files (oldest deleted first); None: all.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        frequency: int = 1,
        start: int = 0,
        max_traces: int | None = None,
    ) -> None:
        if not isinstance(directory, str | os.PathLike) or not str(directory):
            raise ConfigError(message("recorder.directory", directory, "a folder path"))
        for key, value, low in (("frequency", frequency, 1), ("start", start, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(message(f"recorder.{key}", value, f"an int >= {low}"))
        if max_traces is not None and (not isinstance(max_traces, int) or max_traces < 1):
            raise ConfigError(message("recorder.max_traces", max_traces, "an int >= 1 or None"))
        self.directory = Path(directory)
        self.frequency, self.start, self.max_traces = frequency, start, max_traces
        self.episodes = 0
        self.written: list[Path] = []
        self._running: dict[int, _Episode] = {}

    @classmethod
    def from_spec(cls, spec: Any) -> Recorder:
        """Build from a directory string or a dict with ``directory, frequency, start, max_traces``.

        The reference's hyphenated ``max-traces`` key is accepted as ``max_traces``.
        """
        if isinstance(spec, Recorder):
            return spec
        if isinstance(spec, str | os.PathLike):
            return cls(spec)
        if not isinstance(spec, Mapping):
            raise ConfigError(message("recorder", spec, "a directory or a dict"))
        kwargs = {str(key).replace("-", "_"): value for key, value in spec.items()}
        unknown = sorted(set(kwargs) - set(RECORDER_KEYS))
        if unknown:
            raise ConfigError(
                f"recorder: unknown key(s) {unknown}; valid: {', '.join(RECORDER_KEYS)}"
            )
        if "directory" not in kwargs:
            raise ConfigError("recorder.directory: missing; give the folder for trace files")
        return cls(**kwargs)

    def attach(self, agent: Agent) -> None:
        """Remember the agent's specs (stored in each trace's metadata)."""
        self._state_specs, self._action_specs = agent.state_specs, agent.action_specs

    def on_act(
        self,
        agent: Agent,
        states: dict[str, Any],
        masks: dict[str, Any],
        actions: dict[str, np.ndarray],
        slots: np.ndarray,
    ) -> None:
        """Append each slot's raw states, masks and actions to its running episode."""
        states_np = {name: x.detach().cpu().numpy() for name, x in states.items()}
        masks_np = {name: m.detach().cpu().numpy() for name, m in masks.items()}
        for row, slot in enumerate(slots.tolist()):
            episode = self._running.setdefault(slot, _Episode())
            episode.states.append({name: x[row] for name, x in states_np.items()})
            episode.masks.append({name: m[row] for name, m in masks_np.items()})
            episode.actions.append({name: np.asarray(a[row]) for name, a in actions.items()})

    def on_observe(
        self, agent: Agent, rewards: np.ndarray, terminals: np.ndarray, slots: np.ndarray
    ) -> None:
        """Append rewards/terminals; write finished episodes that are due."""
        rows = zip(rewards.tolist(), terminals.tolist(), slots.tolist(), strict=True)
        for reward, terminal, slot in rows:
            episode = self._running.get(slot)
            if episode is None:
                continue
            episode.rewards.append(float(reward))
            episode.terminals.append(int(terminal))
            if terminal:
                del self._running[slot]
                index, self.episodes = self.episodes, self.episodes + 1
                if index >= self.start and (index - self.start) % self.frequency == 0:
                    self._write(index, episode)

    def _write(self, index: int, episode: _Episode) -> None:
        names_s, names_a = self._state_specs.names(), self._action_specs.names()
        path = write_trace(
            self.directory,
            index,
            {n: np.stack([step[n] for step in episode.states]) for n in names_s},
            {n: np.stack([step[n] for step in episode.actions]) for n in names_a},
            np.asarray(episode.rewards, dtype=np.float32),
            np.asarray(episode.terminals, dtype=np.int64),
            masks=episode.stacked_masks(self._action_specs),
            state_specs=self._state_specs,
            action_specs=self._action_specs,
        )
        self.written.append(path)
        if self.max_traces is not None:
            existing = sorted(self.directory.glob(f"{PREFIX}*{SUFFIX}"))
            for old in existing[: max(0, len(existing) - self.max_traces)]:
                old.unlink(missing_ok=True)

    def close(self, agent: Agent) -> None:
        """Drop unfinished episodes (traces hold whole episodes only)."""
        self._running.clear()
