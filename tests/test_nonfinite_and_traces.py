"""NaN rewards are refused (observe, runner, trace files); corrupt traces name their file and
pretraining fails naming every bad file, or skips them on request."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from forceexp import Agent, Environment, Runner
from forceexp.errors import CheckpointError, ConfigError
from forceexp.observers.recorder import list_traces, read_trace, write_trace

STATES = {"type": "float", "shape": (4,), "min_value": 0.0, "max_value": 1.0}
ACTIONS = {"type": "int", "shape": (), "num_values": 4}


def ppo(**kwargs: Any) -> Agent:
    options = {"states": STATES, "actions": ACTIONS, "seed": 0, "device": "cpu"}
    return Agent.create("ppo", **{**options, "rollout_length": 8, "minibatch_size": 8, **kwargs})


def traces(directory: Path, episodes: int = 4, length: int = 6, reward: float = 1.0) -> None:
    rng = np.random.default_rng(0)
    for episode in range(episodes):
        targets = rng.integers(0, 4, size=length)
        terminals = np.zeros(length, np.int64)
        terminals[-1] = 1
        rewards = np.full(length, reward)
        states = np.eye(4, dtype=np.float32)[targets]
        write_trace(directory, episode, states, targets, rewards, terminals)


@pytest.mark.parametrize("reward", [float("nan"), float("inf"), -float("inf"), 1e39])
def test_observe_refuses_non_finite_rewards(reward: float) -> None:
    agent = ppo()
    agent.act(np.eye(4, dtype=np.float32)[0])
    with pytest.raises(
        ConfigError,
        match=r"observe\.reward \(parallel slot 0, timestep 1\): .* is invalid; expected a finite",
    ):
        agent.observe(reward=reward, terminal=0)
    agent.observe(reward=1.0, terminal=0)  # the slot is still acting: the call can be redone
    assert torch.isfinite(torch.cat([p.flatten() for p in agent.policy.parameters()])).all()


def test_observe_names_the_parallel_slot() -> None:
    agent = ppo(parallel_interactions=3)
    agent.act(np.eye(4, dtype=np.float32)[:3], parallel=[0, 1, 2])
    with pytest.raises(ConfigError, match=r"parallel slot 2, timestep 3\): nan is invalid"):
        agent.observe(reward=[0.0, 1.0, float("nan")], terminal=[0, 0, 0], parallel=[0, 1, 2])


def test_observe_refuses_non_numeric_rewards() -> None:
    agent = ppo()
    agent.act(np.eye(4, dtype=np.float32)[0])
    with pytest.raises(ConfigError, match=r"observe\.reward: 'hello' is invalid; expected a num"):
        agent.observe(reward="hello", terminal=0)


class NaNAfter(Environment):
    """The identity task whose reward turns NaN at step 5."""

    def __init__(self) -> None:
        self.steps = 0

    def states(self) -> dict[str, Any]:
        return dict(STATES)

    def actions(self) -> dict[str, Any]:
        return dict(ACTIONS)

    def reset(self, seed: int | None = None) -> np.ndarray:
        return np.eye(4, dtype=np.float32)[0]

    def execute(self, actions: Any) -> tuple[np.ndarray, int, float]:
        self.steps += 1
        reward = float("nan") if self.steps == 5 else 1.0
        return np.eye(4, dtype=np.float32)[0], 0, reward


def test_runner_stops_at_the_first_nan_reward() -> None:
    runner = Runner(agent=ppo(), environment=NaNAfter, max_episode_timesteps=100)
    with pytest.raises(ConfigError, match=r"parallel slot 0, timestep 5\): nan is invalid"):
        runner.run(num_timesteps=50, use_tqdm=False)


def test_trace_with_nan_reward_is_refused(tmp_path: Path) -> None:
    traces(tmp_path, episodes=1, reward=float("nan"))
    (path,) = list_traces(tmp_path)
    with pytest.raises(CheckpointError, match=rf"{path.name}: key 'reward' has a non-finite .*0"):
        read_trace(path, STATES, ACTIONS)


def corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "not-a-zip":
        path.write_bytes(b"hello")
    elif how == "bad-data":  # a changed byte of compressed data: zlib.error or a CRC failure
        with zipfile.ZipFile(path) as archive:
            info = archive.infolist()[-1]
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
        data[start + info.compress_size - 1] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "not-a-zip", "bad-data"])
def test_corrupt_trace_names_the_file(tmp_path: Path, how: str) -> None:
    traces(tmp_path, episodes=1)
    (path,) = list_traces(tmp_path)
    corrupt(path, how)
    with pytest.raises(CheckpointError, match=rf"{path.name}: (not a readable|invalid) .*trace"):
        read_trace(path, STATES, ACTIONS)


def test_pretrain_names_every_bad_file_or_skips_them(tmp_path: Path) -> None:
    traces(tmp_path, episodes=4)
    files = list_traces(tmp_path)
    corrupt(files[1], "truncated")
    corrupt(files[3], "bad-data")
    with pytest.raises(
        CheckpointError, match=rf"2 of 4 .*{files[1].name}.*{files[3].name}.*skip_unreadable"
    ):
        ppo().pretrain(tmp_path, num_iterations=1, num_traces=None, objective="imitation")
    agent = ppo()
    with pytest.warns(UserWarning, match=rf"pretrain: skipping .*{files[1].name}"):
        agent.pretrain(
            tmp_path, num_iterations=1, num_traces=None, objective="imitation", skip_unreadable=True
        )
    assert agent.episodes == 2
    for path in (files[0], files[2]):
        corrupt(path, "not-a-zip")
    with (
        pytest.warns(UserWarning, match="skipping"),
        pytest.raises(CheckpointError, match="no readable trace file"),
    ):
        ppo().pretrain(tmp_path, num_iterations=1, skip_unreadable=True)
