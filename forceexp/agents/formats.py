"""File formats: the agent spec as JSON, stable weight names, RNG states, readers and writers.

A full checkpoint (``.pt``, read with ``torch.load(weights_only=True)``) holds the agent spec as
JSON, ``agent.state_dict()`` (weights, optimizer, normalizer statistics), the counters and the
RNG states. NumPy (``.npz``) and HDF5 (``.h5``) files hold the weights and counters under stable
names such as ``policy/network/mlp.0.weight`` plus the spec JSON and format stamps.

Integrity (format_version 2): a ``.pt`` file holds the serialized payload as one byte tensor
plus its SHA-256, checked before the payload is unpickled (``weights_only``); ``.npz``/``.h5``
files carry a SHA-256 over every array (name, dtype, shape, bytes) and the spec JSON. So any
change to the data a file yields is detected; a change elsewhere in the file either fails to
load or leaves the loaded data byte-identical. Non-finite weights are refused on read.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch

from forceexp.errors import CheckpointError
from forceexp.version import __version__

if TYPE_CHECKING:
    from forceexp.agents.agent import Agent

Counter = Literal["timesteps", "episodes", "updates"]

FORMAT_VERSION = 2  # 2: payload digests (files of version 1 load without)
COUNTERS: tuple[str, ...] = ("timesteps", "episodes", "updates")
_SPEC_KEY = "__spec__"
_COUNTER_PREFIX = "counters/"


class Payload(NamedTuple):
    """What a file holds: agent spec, agent state, counters and (checkpoints only) RNG states."""

    spec: dict[str, Any]
    state: dict[str, Any]
    counters: dict[str, int]
    rng: dict[str, Any] | None
    memory: dict[str, Any] | None = None  # replay memory (checkpoints saved with memory=True)


# ---------------------------------------------------------------------------- spec as JSON
def _plain(value: Any) -> Any:
    """Convert a spec value to JSON types, or raise TypeError."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    raise TypeError(type(value).__name__)


def spec_json(spec: Mapping[str, Any]) -> str:
    """The agent spec as JSON; values that are not JSON (modules, callables) are left out.

    Left-out keys are listed under ``__unsaved__`` so ``load`` can ask for them by name. Keys
    keep their order: the order of states and actions is part of the model (concatenated
    inputs, the flat action vector of DDPG/TD3/SAC).
    """
    out: dict[str, Any] = {}
    unsaved = []
    for key, value in spec.items():
        try:
            out[key] = _plain(value)
        except TypeError as exc:
            unsaved.append(key)
            warnings.warn(
                f"agent spec key {key!r} ({exc}) is not JSON; Agent.load will need it again",
                stacklevel=3,
            )
    if unsaved:
        out["__unsaved__"] = unsaved
    return json.dumps(out)


# ---------------------------------------------------------------------------- state flattening
def flatten_weights(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Tensors of ``state`` under stable names (``policy/network/mlp.0.weight``).

    Top-level tensors and flat ``{str: Tensor}`` dicts (module state dicts) are weights; nested
    structures such as optimizer state are not.
    """
    out = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[key] = value
        elif isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
        ):
            for sub, tensor in value.items():
                out[f"{key}/{sub.replace('.', '/', 1)}"] = tensor
    return out


def unflatten_weights(weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Invert ``flatten_weights``: ``policy/network/mlp.0.weight`` -> state['policy'][...]."""
    state: dict[str, Any] = {}
    for name, tensor in weights.items():
        if "/" not in name:
            state[name] = tensor
            continue
        key, rest = name.split("/", 1)
        state.setdefault(key, {})[rest.replace("/", ".", 1)] = tensor
    return state


def check_finite(state: Mapping[str, Any], path: Path) -> None:
    """Raise CheckpointError naming the first weight holding NaN or infinity."""
    for name, tensor in flatten_weights(state).items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: weight {name} holds non-finite values (NaN or inf)")


def _per_slot(name: str) -> bool:
    """Whether weight ``name`` is a preprocessing pipeline's per-slot history.

    Its rows follow ``parallel_interactions``, which a load may change; the agent then starts
    those histories from zeros (``forceexp.core.preprocessing.load_preprocessing``).
    """
    group = name.split("/", 1)[0]
    return group in ("state_preprocessing", "reward_processing") and bool(
        re.search(r"internals\d+$", name)
    )


def check_compatible(agent: Agent, state: Mapping[str, Any], path: Path) -> None:
    """Raise CheckpointError naming every weight whose name, shape or dtype differs."""
    mine, theirs = flatten_weights(agent.state_dict()), flatten_weights(state)
    have = {n: tuple(t.shape) for n, t in mine.items()}
    got = {n: tuple(t.shape) for n, t in theirs.items()}
    problems = [
        f"{name}: file {got[name]} vs agent {shape}"
        for name, shape in have.items()
        if name in got and got[name] != shape and not _per_slot(name)
    ]
    problems += [
        f"{name}: file dtype {theirs[name].dtype} vs agent {mine[name].dtype}"
        for name in have
        if name in got and theirs[name].dtype != mine[name].dtype
    ]
    missing = sorted(set(have) - set(got))
    unexpected = sorted(set(got) - set(have))
    if missing:
        problems.append(f"missing in file: {missing}")
    if unexpected:
        problems.append(f"not in agent: {unexpected}")
    if problems:
        raise CheckpointError(
            f"{path}: weights do not match the agent's specs; " + "; ".join(problems)
        )


# ---------------------------------------------------------------------------- RNG states
def rng_state() -> dict[str, Any]:
    """Torch, NumPy and Python RNG states as tensors and plain types (``weights_only`` safe)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["name"], keys, numpy["pos"], numpy["has_gauss"], numpy["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------- writers
def _meta() -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "forceexp_version": __version__,
        "torch_version": str(torch.__version__),
    }


def arrays_digest(arrays: Mapping[str, np.ndarray], spec: str) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes (sorted by name) and the spec."""
    digest = hashlib.sha256(spec.encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(json.dumps([name, array.dtype.str, list(array.shape)]).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _write_checkpoint(agent: Agent, tmp: Path, memory: bool = False) -> None:
    payload = {
        **_meta(),
        "spec": spec_json(agent.spec),
        "counters": {name: int(getattr(agent, name)) for name in COUNTERS},
        "state": agent.state_dict(),
        "rng": rng_state(),
    }
    if memory:
        payload["memory"] = agent.memory_state_dict()
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    blob = buffer.getbuffer()
    sealed = {
        **_meta(),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "payload": torch.frombuffer(bytearray(blob), dtype=torch.uint8),
    }
    with tmp.open("wb") as handle:
        torch.save(sealed, handle)


def _weight_arrays(agent: Agent) -> dict[str, np.ndarray]:
    arrays = {n: t.detach().cpu().numpy() for n, t in flatten_weights(agent.state_dict()).items()}
    for name in COUNTERS:
        arrays[_COUNTER_PREFIX + name] = np.asarray(getattr(agent, name), dtype=np.int64)
    return arrays


def _write_numpy(agent: Agent, tmp: Path, memory: bool = False) -> None:
    arrays = _weight_arrays(agent)
    spec = spec_json(agent.spec)
    meta = json.dumps({**_meta(), "spec": spec, "sha256": arrays_digest(arrays, spec)})
    arrays[_SPEC_KEY] = np.frombuffer(meta.encode(), dtype=np.uint8)
    with tmp.open("wb") as handle:
        np.savez(handle, **arrays)


def _write_hdf5(agent: Agent, tmp: Path, memory: bool = False) -> None:
    import h5py

    arrays, spec = _weight_arrays(agent), spec_json(agent.spec)
    with h5py.File(tmp, "w") as handle:
        for key, value in _meta().items():
            handle.attrs[key] = value
        handle.attrs["spec"] = spec
        handle.attrs["sha256"] = arrays_digest(arrays, spec)
        for name, array in arrays.items():
            handle.create_dataset(name, data=array)


#: Writers ``(agent, tmp, memory)``; only checkpoints hold the replay memory (``memory=True``).
WRITERS: dict[str, Callable[[Agent, Path, bool], None]] = {
    "checkpoint": _write_checkpoint,
    "numpy": _write_numpy,
    "hdf5": _write_hdf5,
}


# ---------------------------------------------------------------------------- readers
def _parse_meta(meta: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Check the format version and decode the spec JSON."""
    _check_version(meta, path)
    try:
        spec = json.loads(meta["spec"])
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: agent spec missing or not JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise CheckpointError(f"{path}: agent spec is a {type(spec).__name__}, not a dict")
    return spec


def _check_version(meta: Mapping[str, Any], path: Path) -> int:
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: not a forceexp file (no format_version)")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written with format_version {version} by forceexp "
            f"{meta.get('forceexp_version')}; this forceexp reads format_version <= "
            f"{FORMAT_VERSION}. Upgrade forceexp to load it"
        )
    return version


def _short(exc: BaseException) -> str:
    """First line of an exception message (library messages can be pages long)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def _unseal(data: Any, path: Path) -> Any:
    """The inner payload of a format-2 checkpoint, after checking its SHA-256."""
    blob, digest = data.get("payload"), data.get("sha256")
    if (
        not isinstance(blob, torch.Tensor)
        or blob.dtype != torch.uint8
        or not isinstance(digest, str)
    ):
        raise CheckpointError(f"{path}: checkpoint without its payload or SHA-256 (corrupt)")
    raw = blob.numpy().tobytes()
    if hashlib.sha256(raw).hexdigest() != digest:
        raise CheckpointError(f"{path}: payload does not match its SHA-256 (corrupt file)")
    try:
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint payload ({_short(exc)})") from None


def _read_checkpoint(path: Path) -> Payload:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({_short(exc)})") from None
    if isinstance(data, dict) and "payload" in data and _check_version(data, path) >= 2:
        data = _unseal(data, path)
    if not isinstance(data, dict) or "state" not in data or "counters" not in data:
        raise CheckpointError(f"{path}: not a forceexp checkpoint (missing state/counters)")
    spec = _parse_meta(data, path)
    if not isinstance(data["state"], dict) or not isinstance(data["counters"], dict):
        raise CheckpointError(f"{path}: state and counters must be dicts (corrupt checkpoint)")
    memory = data.get("memory")
    return Payload(spec, data["state"], dict(data["counters"]), data.get("rng"), memory)


def _check_digest(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], path: Path) -> None:
    """Check the arrays' SHA-256 (required from format_version 2 on)."""
    digest, version = meta.get("sha256"), meta.get("format_version")
    if digest is None and isinstance(version, int) and version < 2:
        return
    spec = meta.get("spec")
    if not isinstance(digest, str) or not isinstance(spec, str):
        raise CheckpointError(f"{path}: weights file without its SHA-256 (corrupt)")
    if arrays_digest(arrays, spec) != digest:
        raise CheckpointError(f"{path}: weights do not match their SHA-256 (corrupt file)")


def _split_arrays(arrays: Mapping[str, np.ndarray], path: Path) -> Payload:
    try:
        counters = {
            name[len(_COUNTER_PREFIX) :]: int(a)
            for name, a in arrays.items()
            if name.startswith(_COUNTER_PREFIX)
        }
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: counters are not integers ({_short(exc)})") from None
    weights = {
        name: torch.from_numpy(np.array(a))
        for name, a in arrays.items()
        if not name.startswith(_COUNTER_PREFIX)
    }
    return Payload({}, unflatten_weights(weights), counters, None)


def _read_numpy(path: Path) -> Payload:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(arrays.pop(_SPEC_KEY).tobytes().decode())
        if not isinstance(meta, dict):
            raise TypeError(f"metadata is a {type(meta).__name__}")
    except Exception as exc:
        raise CheckpointError(
            f"{path}: truncated or corrupt NumPy weights file ({_short(exc)})"
        ) from None
    _check_digest(arrays, meta, path)
    return _split_arrays(arrays, path)._replace(spec=_parse_meta(meta, path))


def _read_hdf5(path: Path) -> Payload:
    import h5py

    arrays: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as handle:
            meta = dict(handle.attrs)

            def visit(name: str, node: Any) -> None:
                if isinstance(node, h5py.Dataset):
                    arrays[name] = node[()]

            handle.visititems(visit)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: truncated or corrupt HDF5 weights file ({_short(exc)})"
        ) from None
    meta = {k: v.item() if isinstance(v, np.generic) else v for k, v in meta.items()}
    _check_digest(arrays, meta, path)
    return _split_arrays(arrays, path)._replace(spec=_parse_meta(meta, path))


READERS: dict[str, Callable[[Path], Payload]] = {
    "checkpoint": _read_checkpoint,
    "numpy": _read_numpy,
    "hdf5": _read_hdf5,
}
