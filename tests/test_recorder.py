"""Recorder observer and trace files: keys, dtypes, names, frequency/start/max_traces, errors."""

import json
from pathlib import Path

import numpy as np
import pytest

from forceexp import Agent
from forceexp.errors import CheckpointError, ConfigError
from forceexp.observers.recorder import FORMAT_VERSION, Recorder, read_trace, write_trace

STATES = {
    "pos": {"type": "float", "shape": (2,)},
    "flag": {"type": "bool", "shape": (3,)},
    "count": {"type": "int", "shape": (), "num_values": 5},
}
ACTIONS = {
    "move": {"type": "int", "shape": (), "num_values": 3},
    "force": {"type": "float", "shape": (2,), "min_value": -1.0, "max_value": 1.0},
    "switch": {"type": "bool", "shape": ()},
}


def _states(batch, rng):
    return {
        "pos": rng.normal(size=(batch, 2)),
        "flag": rng.random((batch, 3)) > 0.5,
        "count": rng.integers(0, 5, size=batch),
        "move_mask": np.tile([True, False, True], (batch, 1)),
    }


def _agent(recorder, parallel=2):
    return Agent.create(
        "random",
        states=STATES,
        actions=ACTIONS,
        parallel_interactions=parallel,
        seed=0,
        device="cpu",
        recorder=recorder,
    )


def _play(agent, lengths, rng):
    """Run slots 0 and 1 in lockstep; slot i's episodes last lengths[i] steps."""
    for step in range(max(lengths) * 3):
        slots = np.array([i for i in range(2) if step < lengths[i] * 3])
        agent.act(_states(len(slots), rng), parallel=slots)
        terminals = np.array([int((step + 1) % lengths[i] == 0) for i in slots])
        agent.observe(np.ones(len(slots)), terminals, parallel=slots)


def _load(path):
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def test_recorder_writes_one_trace_per_episode_from_parallel_slots(tmp_path):
    agent = _agent(dict(directory=str(tmp_path)))
    _play(agent, lengths=(2, 3), rng=np.random.default_rng(0))
    agent.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"trace-{i:09d}.npz" for i in range(6)]
    data = _load(tmp_path / "trace-000000000.npz")
    assert set(data) == {
        "states/pos",
        "states/flag",
        "states/count",
        "masks/move",
        "actions/move",
        "actions/force",
        "actions/switch",
        "reward",
        "terminal",
        "metadata",
    }
    assert data["states/pos"].dtype == np.float32 and data["states/pos"].shape == (2, 2)
    assert data["states/flag"].dtype == np.bool_ and data["states/count"].dtype == np.int64
    assert data["masks/move"].shape == (2, 3) and not data["masks/move"][:, 1].any()
    assert set(data["actions/move"].tolist()) <= {0, 2}  # masks respected and recorded
    assert data["actions/force"].shape == (2, 2) and data["actions/switch"].dtype == np.bool_
    assert data["terminal"].dtype == np.int64 and data["terminal"].tolist() == [0, 1]
    assert data["reward"].dtype == np.float32
    metadata = json.loads(data["metadata"].tobytes().decode())
    assert metadata["format_version"] == FORMAT_VERSION
    assert metadata["states"]["count"] == {"type": "int", "shape": [], "num_values": 5}
    lengths = sorted(len(_load(p)["terminal"]) for p in tmp_path.iterdir())
    assert lengths == [2, 2, 2, 3, 3, 3]
    assert not list(tmp_path.glob("*.tmp"))


def test_read_trace_round_trip_of_recorded_files(tmp_path):
    agent = _agent(str(tmp_path))
    _play(agent, lengths=(2, 3), rng=np.random.default_rng(1))
    trace = read_trace(tmp_path / "trace-000000001.npz", agent.state_specs, agent.action_specs)
    assert set(trace.states) == {"pos", "flag", "count"} and set(trace.masks) == {"move"}
    assert trace.actions["force"].dtype == np.float32 and trace.terminal[-1] == 1


def test_frequency_start_and_max_traces(tmp_path):
    agent = _agent(dict(directory=str(tmp_path), frequency=2, start=1, **{"max-traces": 2}))
    _play(agent, lengths=(2, 2), rng=np.random.default_rng(0))  # 6 episodes: 0..5
    assert agent.observers[0].episodes == 6
    assert [p.name for p in agent.observers[0].written] == [
        "trace-000000001.npz",
        "trace-000000003.npz",
        "trace-000000005.npz",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "trace-000000003.npz",
        "trace-000000005.npz",
    ]


def test_independent_acts_and_unfinished_episodes_are_not_recorded(tmp_path):
    agent = _agent(str(tmp_path), parallel=1)
    rng = np.random.default_rng(0)
    state = {key: value[0] for key, value in _states(1, rng).items()}
    agent.act(state, independent=True)
    agent.act(state)
    agent.observe(1.0, 0)
    agent.close()
    assert list(tmp_path.iterdir()) == []


def test_write_trace_single_unnamed_state_and_action(tmp_path):
    specs = {"type": "float", "shape": (4,)}, {"type": "int", "num_values": 2}
    path = write_trace(
        tmp_path, 7, np.zeros((3, 4), np.float64), np.array([0, 1, 1]), [1, 1, 1], [0, 0, 2]
    )
    assert path.name == "trace-000000007.npz"
    assert set(_load(path)) >= {"states/state", "actions/action"}
    trace = read_trace(path, *specs)
    assert trace.states["state"].dtype == np.float32  # any float dtype is accepted
    assert trace.terminal.tolist() == [0, 0, 2]


def test_read_trace_accepts_the_reference_unnamed_layout(tmp_path):
    path = tmp_path / "trace-000000000.npz"
    np.savez_compressed(
        path, states=np.zeros((2, 4)), actions=np.array([1, 0]), reward=np.ones(2), terminal=[0, 1]
    )
    trace = read_trace(path, {"type": "float", "shape": (4,)}, {"type": "int", "num_values": 2})
    assert trace.actions["action"].tolist() == [1, 0]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (123, r"recorder: 123 is invalid; expected a directory or a dict"),
        (dict(directory="d", every=3), r"recorder: unknown key\(s\) \['every'\]"),
        (dict(frequency=3), r"recorder.directory: missing"),
        (dict(directory="d", frequency=0), r"recorder.frequency: 0 is invalid"),
        (dict(directory="d", start=-1), r"recorder.start: -1 is invalid"),
        (dict(directory="d", max_traces=0), r"recorder.max_traces: 0 is invalid"),
        (dict(directory=""), r"recorder.directory: '' is invalid"),
    ],
)
def test_bad_recorder_specs(spec, match):
    with pytest.raises(ConfigError, match=match):
        Recorder.from_spec(spec)


S, A = {"type": "float", "shape": (2,)}, {"type": "int", "num_values": 3}


def _write(tmp_path, **arrays):
    base = {
        "states/state": np.zeros((3, 2), np.float32),
        "actions/action": np.array([0, 1, 2]),
        "reward": np.ones(3, np.float32),
        "terminal": np.array([0, 0, 1]),
    }
    base.update(arrays)
    path = tmp_path / "trace-000000000.npz"
    np.savez_compressed(path, **{k: v for k, v in base.items() if v is not None})
    return path


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"actions/action": None}, r"trace-000000000.npz: missing key 'actions/action'"),
        ({"states/state": np.zeros((3, 5))}, r"\.npz: states/state: .* Got shape \(3, 5\)"),
        ({"states/state": np.zeros((2, 2))}, r"key 'states/state' has 2 steps, 'terminal' 3"),
        ({"terminal": np.array([0, 0, 0])}, r"\.npz: key 'terminal': the last episode has no"),
        ({"terminal": np.array([0, 3, 1])}, r"key 'terminal' has values outside 0, 1, 2"),
        ({"terminal": np.zeros((3, 1))}, r"key 'terminal' must be a non-empty 1-D int array"),
        ({"reward": np.ones(2)}, r"key 'reward' must be numbers of shape \(3,\)"),
        ({"actions/action": np.array([0, 1, 3])}, r"actions/action: .* Got values in \[0, 3\]"),
        ({"actions/action": np.array([0.5, 1, 2])}, r"actions/action: .* Got dtype float64"),
        ({"states/speed": np.zeros(3)}, r"unexpected key 'states/speed'"),
        ({"masks/action": np.ones((3, 2), bool)}, r"key 'masks/action' must be bool of shape"),
        ({"masks/action": np.zeros((3, 3), bool)}, r"key 'masks/action' has a step where no"),
        ({"metadata": np.frombuffer(b"{x", np.uint8)}, r"key 'metadata' is not valid JSON"),
        (
            {"metadata": np.frombuffer(b'{"format_version": 99}', np.uint8)},
            r"trace format_version 99 is newer than supported",
        ),
    ],
)
def test_read_trace_errors_name_the_file_and_key(tmp_path, arrays, match):
    path = _write(tmp_path, **arrays)
    with pytest.raises(CheckpointError, match=match):
        read_trace(path, S, A)


def test_read_trace_accepts_str_metadata(tmp_path):
    path = _write(tmp_path, metadata=np.array('{"format_version": 1}'))
    assert read_trace(path, S, A).terminal[-1] == 1


def test_read_trace_refuses_unreadable_files(tmp_path):
    path = Path(tmp_path / "trace-000000000.npz")
    path.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"trace-000000000.npz: not a readable .npz trace"):
        read_trace(path, S, A)
