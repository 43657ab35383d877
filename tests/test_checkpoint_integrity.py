"""Checkpoint folders under attack: index path traversal, bit flips, NaN weights, bad payloads,
fallback to the previous checkpoint, temp files of killed saves. Real files, real processes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from forceexp import Agent, checkpoints
from forceexp.agents import formats, persistence
from forceexp.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "agent": "ppo",
    "environment": {"environment": "identity", "num_values": 4},
    "rollout_length": 16,
    "minibatch_size": 16,
    "epochs": 1,
    "device": "cpu",
    "network": {"type": "auto", "size": 8, "depth": 1},
    "baseline": None,
    "seed": 0,
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def make_agent(timesteps: int = 0) -> Agent:
    spec = dict(SPEC)
    env = spec.pop("environment")
    agent = Agent.create(spec, environment=env)
    agent.timesteps = timesteps
    return agent


def weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    return formats.flatten_weights(state)


def save_two(directory: Path) -> Agent:
    """agent-1 (timesteps 1) then agent-2 (timesteps 2), both indexed; returns the agent."""
    agent = make_agent(1)
    agent.save(directory, append="timesteps")
    agent.timesteps = 2
    agent.save(directory, append="timesteps")
    return agent


# ---------------------------------------------------------------------------- containment
@pytest.mark.parametrize(
    "name", ["../outside.pt", "../../../outside.pt", "sub/x.pt", "..", "", 7, None]
)
def test_contained_refuses_names_outside(tmp_path: Path, name: object) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint\.json: file: .* is invalid; expected"):
        checkpoints.contained(tmp_path, name)


def test_index_entries_outside_the_folder_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b" / "checkpoints"
    outside = make_agent(99)
    outside.save(tmp_path, filename="outside")  # a valid checkpoint outside the folder
    save_two(folder)
    index = json.loads((folder / checkpoints.INDEX).read_text())
    for name in ("../../../outside.pt", str(tmp_path / "outside.pt")):
        index["checkpoints"].append({"file": name, "format": "checkpoint", "timesteps": 99})
    (folder / checkpoints.INDEX).write_text(json.dumps(index))
    with pytest.warns(UserWarning, match=r"ignoring an index entry: .*outside\.pt.* is invalid"):
        loaded = Agent.load(folder)
    assert loaded.timesteps == 2  # the newest entry inside the folder


def test_symlink_leading_outside_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    save_two(folder)
    make_agent(99).save(tmp_path, filename="outside")
    (folder / "agent-3.pt").symlink_to(tmp_path / "outside.pt")
    checkpoints.write_index(folder, [{"file": "agent-3.pt", "format": "checkpoint"}])
    with pytest.raises(CheckpointError, match="resolves outside the folder"):
        checkpoints.contained(folder, "agent-3.pt")
    with pytest.warns(UserWarning, match="resolves outside"):
        assert Agent.load(folder).timesteps == 2  # the index is refused, the scan skips the link


def test_pruning_deletes_only_files_the_saver_wrote(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    victim, neighbour = tmp_path / "victim.txt", folder / "notes.txt"
    victim.write_text("keep me")
    neighbour.write_text("keep me too")
    forged = [
        {"file": "../victim.txt", "format": "checkpoint", "owner": "agent"},
        {"file": str(victim), "format": "checkpoint", "owner": "agent"},
        {"file": "notes.txt", "format": "checkpoint", "owner": "agent"},
    ]
    checkpoints.write_index(folder, forged)
    agent = make_agent()
    for step in range(1, 4):
        agent.timesteps = step
        path = agent.save(folder, append="timesteps")
        checkpoints.register(Path(path), "checkpoint", {"timesteps": step}, keep=1, owner="agent")
    assert victim.read_text() == "keep me"
    assert neighbour.read_text() == "keep me too"
    assert sorted(p.name for p in folder.glob("*.pt")) == ["agent-3.pt"]
    assert [e["file"] for e in checkpoints.read_index(folder)] == ["agent-3.pt"]


# ---------------------------------------------------------------------------- bit flips
def flipped(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def flip_outcomes(path: Path, bits: list[int], reference: dict[str, Any]) -> dict[str, int]:
    """Load ``path`` with each bit flipped (no index): detected, or weights equal the saved."""
    original = path.read_bytes()
    counts = {"detected": 0, "identical": 0}
    fmt = checkpoints.FORMAT_OF_SUFFIX[path.suffix]
    for bit in bits:
        path.write_bytes(flipped(original, bit))
        try:
            payload = persistence.read_file(path, fmt)
        except CheckpointError:
            counts["detected"] += 1
            continue
        got = weights(payload.state)
        assert got.keys() == reference.keys(), f"bit {bit}: weight names changed silently"
        for name, tensor in reference.items():
            assert torch.equal(got[name], tensor), f"bit {bit}: {name} changed silently"
        counts["identical"] += 1
    path.write_bytes(original)
    return counts


def saved_file(tmp_path: Path, fmt: str) -> tuple[Path, dict[str, Any]]:
    agent = make_agent(5)
    path = Path(agent.save(tmp_path / "saved", format=fmt))
    alone = tmp_path / f"alone{path.suffix}"  # no index beside it: only the file's own digest
    shutil.copy(path, alone)
    return alone, {n: t.detach().clone() for n, t in weights(agent.state_dict()).items()}


@pytest.mark.parametrize("fmt", ["checkpoint", "numpy"])
def test_bit_flips_are_detected_or_harmless(tmp_path: Path, fmt: str) -> None:
    """Files loaded alone (no index): the digest inside the file catches changed data."""
    path, reference = saved_file(tmp_path, fmt)
    size = path.stat().st_size * 8
    bits = random.Random(0).sample(range(size), 150)
    counts = flip_outcomes(path, bits, reference)
    assert counts["detected"] > 0
    assert sum(counts.values()) == len(bits)


@pytest.mark.parametrize("fmt", ["checkpoint", "numpy", "hdf5"])
def test_bit_flips_through_the_index_are_detected_before_parsing(tmp_path: Path, fmt: str) -> None:
    """Through the index every flip is caught; .h5 files are checked before HDF5 parses them
    (the HDF5 C library can crash the process on a corrupt file)."""
    agent = make_agent(5)
    path = Path(agent.save(tmp_path, format=fmt))
    original = path.read_bytes()
    for bit in random.Random(1).sample(range(len(original) * 8), 60):
        path.write_bytes(flipped(original, bit))
        with pytest.raises(CheckpointError, match=rf"{path.name}: .*(corrupt|SHA-256|not a)"):
            persistence.read_file(path, fmt)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["checkpoint", "numpy"])
def test_one_bit_flip_in_every_byte(tmp_path: Path, fmt: str) -> None:
    """Exhaustive over bytes (one bit each, rotating): every flip detected or harmless."""
    path, reference = saved_file(tmp_path, fmt)
    size = path.stat().st_size
    flip_outcomes(path, [byte * 8 + byte % 8 for byte in range(size)], reference)


# ---------------------------------------------------------------------------- bad contents
def reseal_checkpoint(path: Path, mutate: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite a .pt with a changed (but well-formed and digested) payload, re-indexed."""
    sealed = torch.load(path, weights_only=True)
    data = torch.load(io.BytesIO(sealed["payload"].numpy().tobytes()), weights_only=True)
    mutate(data)
    buffer = io.BytesIO()
    torch.save(data, buffer)
    blob = buffer.getvalue()
    sealed["payload"] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    sealed["sha256"] = hashlib.sha256(blob).hexdigest()
    torch.save(sealed, path)
    checkpoints.register(path, "checkpoint", {"timesteps": 2})


def _nan_weight(data: dict[str, Any]) -> None:
    data["state"]["policy"]["network.mlp.0.weight"][0, 0] = float("nan")


def _bad_counter(data: dict[str, Any]) -> None:
    data["counters"]["timesteps"] = "many"


def _bad_rng(data: dict[str, Any]) -> None:
    data["rng"]["torch"] = torch.zeros(3, dtype=torch.uint8)


def _no_optimizer(data: dict[str, Any]) -> None:
    data["state"]["optimizer"] = {"state": {}, "param_groups": "x"}


def _renamed_weight(data: dict[str, Any]) -> None:
    policy = data["state"]["policy"]
    policy["renamed"] = policy.pop("network.mlp.0.weight")


def _state_not_dict(data: dict[str, Any]) -> None:
    data["state"] = [1, 2]


BAD = {
    "nan-weight": (_nan_weight, "non-finite"),
    "counter-str": (_bad_counter, r"counters\.timesteps: 'many' is invalid; expected an int"),
    "bad-rng": (_bad_rng, "cannot be applied to the agent"),
    "bad-optimizer": (_no_optimizer, "cannot be applied to the agent"),
    "renamed-weight": (_renamed_weight, "weights do not match"),
    "state-not-dict": (_state_not_dict, "must be dicts"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_latest_falls_back_to_previous(tmp_path: Path, case: str) -> None:
    mutate, reason = BAD[case]
    save_two(tmp_path)
    reseal_checkpoint(tmp_path / "agent-2.pt", mutate)
    with pytest.warns(UserWarning, match=rf"skipping agent-2\.pt: .*agent-2\.pt.*{reason}"):
        loaded = Agent.load(tmp_path)
    assert loaded.timesteps == 1
    with pytest.raises(CheckpointError, match=rf"agent-2\.pt.*{reason}"):
        Agent.load(tmp_path, filename="agent-2.pt")


def rewrite_arrays(path: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Rewrite a .npz with changed arrays and a matching digest (a consistent, wrong file)."""
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(arrays.pop("__spec__").tobytes().decode())
    change(arrays)
    meta["sha256"] = formats.arrays_digest(arrays, meta["spec"])
    arrays["__spec__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    checkpoints.register(path, "numpy", {})


def test_nan_and_wrong_dtype_in_weight_files_are_refused(tmp_path: Path) -> None:
    agent = make_agent()
    path = Path(agent.save(tmp_path, format="numpy"))
    name = "policy/network/mlp.0.weight"
    rewrite_arrays(path, lambda a: a[name].__setitem__((0, 0), np.inf))
    with pytest.raises(CheckpointError, match=rf"weight {name} holds non-finite values"):
        persistence.read_file(path, "numpy")
    path = Path(agent.save(tmp_path, format="numpy"))
    rewrite_arrays(path, lambda a: a.__setitem__(name, a[name].astype(np.float64)))
    with pytest.raises(CheckpointError, match=rf"{name}: file dtype torch.float64 vs agent"):
        Agent.load(path)
    h5 = Path(agent.save(tmp_path, format="hdf5"))
    import h5py

    with h5py.File(h5, "r+") as handle:
        handle[name][0, 0] = np.nan
    with pytest.raises(CheckpointError, match=r"agent\.h5: .*SHA-256 differs from the one in"):
        persistence.read_file(h5, "hdf5")  # through the index
    alone = tmp_path / "alone" / "agent.h5"
    alone.parent.mkdir()
    shutil.copy(h5, alone)
    with pytest.raises(CheckpointError, match=r"agent\.h5: weights do not match their SHA-256"):
        persistence.read_file(alone, "hdf5")  # the file's own digest


# ---------------------------------------------------------------------------- killed saves
KILLED_SAVE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from forceexp import Agent
    from forceexp.agents import formats

    spec = {spec!r}
    env = spec.pop("environment")
    agent = Agent.create(spec, environment=env)
    agent.timesteps = 1
    agent.save(sys.argv[1], append="timesteps")

    def stuck(agent, tmp, memory=False):
        Path(tmp).write_bytes(b"half a checkpoint")
        print("writing", flush=True)
        time.sleep(60)

    formats.WRITERS["checkpoint"] = stuck
    agent.timesteps = 2
    agent.save(sys.argv[1], append="timesteps")
    """
)


def test_sigkill_during_save_then_resume_leaves_no_tmp(tmp_path: Path) -> None:
    code = KILLED_SAVE.format(spec=SPEC)
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "writing"
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    assert len(list(tmp_path.glob(".*.tmp"))) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the half-written file is not even a candidate
        agent = Agent.load(tmp_path)
    assert agent.timesteps == 1
    agent.timesteps = 3
    agent.save(tmp_path, append="timesteps")
    assert not list(tmp_path.glob("*.tmp"))
    assert Agent.load(tmp_path).timesteps == 3


def test_temp_files_of_live_writers_are_kept(tmp_path: Path) -> None:
    live = tmp_path / f".agent.pt.{os.getppid()}.{'a' * 32}.tmp"  # the parent is alive
    dead_pid = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dead = tmp_path / f".agent.pt.{dead_pid}.{'b' * 32}.tmp"
    old = tmp_path / f".agent.pt.{'c' * 32}.tmp"  # written before temp names had a pid
    for path in (live, dead, old):
        path.write_bytes(b"x")
    assert sorted(checkpoints.clean_temp_files(tmp_path)) == sorted([dead, old])
    assert live.exists()


@pytest.mark.parametrize(("count", "seed"), [(25, 0), pytest.param(200, 1, marks=pytest.mark.slow)])
def test_hdf5_bit_flips_without_an_index_never_crash_the_loader(
    tmp_path: Path, count: int, seed: int
) -> None:
    """An .h5 loaded alone is parsed in a child process first: a flip that crashes the HDF5
    library there is a CheckpointError here; the rest are detected or harmless."""
    path, reference = saved_file(tmp_path, "hdf5")
    header = list(range(0, 4096))  # superblock and object headers: where crashes come from
    rng = random.Random(seed)
    bits = rng.sample(header, count // 2) + rng.sample(range(path.stat().st_size * 8), count // 2)
    counts = flip_outcomes(path, bits, reference)
    assert counts["detected"] > 0 and sum(counts.values()) == len(bits)
