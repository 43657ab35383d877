"""Replay-based agents inside everything the project already does.

Multi-input layer lists, worker processes, vectorised environments, TensorBoard labels and
pretraining from recorded traces (sockets: ``tests/test_socket.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from forceexp import Agent, Environment, Runner, tags
from forceexp.environments.testing import (
    IdentityEnvironment,
    MultiInputEnvironment,
    TargetEnvironment,
)
from forceexp.execution.evaluation import evaluate
from forceexp.observers.recorder import write_trace

DQN = {
    "agent": "dqn",
    "seed": 0,
    "device": "cpu",
    "network": {"type": "auto", "size": 64, "depth": 1, "activation": "relu"},
    "batch_size": 32,
    "learning_rate": 3e-3,
    "learning_starts": 64,
    "train_freq": 1,
    "target_update_interval": 50,
    "discount": 0.5,
}
MULTI_INPUT = [
    [
        {"type": "retrieve", "tensors": "observation"},
        {"type": "conv2d", "size": 8},
        {"type": "flatten"},
        {"type": "register", "tensor": "obs-embedding"},
    ],
    [
        {"type": "retrieve", "tensors": "attributes"},
        {"type": "embedding", "size": 8},
        {"type": "flatten"},
        {"type": "register", "tensor": "attr-embedding"},
    ],
    [
        {
            "type": "retrieve",
            "tensors": ["obs-embedding", "attr-embedding"],
            "aggregation": "concat",
        },
        {"type": "dense", "size": 32},
    ],
]


def test_dqn_with_a_multi_input_layer_list():
    agent = {**DQN, "network": MULTI_INPUT}
    runner = Runner(agent=agent, environment=MultiInputEnvironment, num_parallel=2, seed=0)
    runner.run(num_timesteps=300, use_tqdm=False)
    memory = runner.agent.memory
    batch = memory.sample(8)
    assert batch.states["observation"].shape == (8, 16, 16, 3)
    assert batch.states["attributes"].dtype == torch.int64 and runner.updates > 100
    runner.close()


def test_dqn_with_worker_processes():
    runner = Runner(
        agent={**DQN, "learning_starts": 100},
        environment="CartPole-v1",
        num_parallel=2,
        remote="multiprocessing",
        seed=0,
    )
    runner.run(num_timesteps=400, use_tqdm=False)
    assert len(runner.agent.memory) == runner.timesteps >= 400 and runner.updates > 0
    runner.close()


def test_dqn_on_a_vectorised_environment_learns_cartpole_basics():
    env = Environment.create("cartpole_vectorized", num_environments=16)
    agent = {
        **DQN,
        "network": {"type": "auto", "size": 64, "depth": 2, "activation": "relu"},
        "discount": 0.99,
        "learning_starts": 1000,
        "train_freq": 16,
        "gradient_steps": 4,
        "target_update_interval": 500,
        "exploration": {
            "type": "linear",
            "num_steps": 6000,
            "initial_value": 1,
            "final_value": 0.05,
        },
    }
    runner = Runner(agent=agent, environment=env, seed=0)
    runner.run(num_timesteps=20_000, use_tqdm=False)
    first = np.mean(runner.episode_returns[:50])
    last = np.mean(runner.episode_returns[-50:])
    runner.close()
    assert last > 2 * first  # random play lasts ~22 steps


def _events(directory: Path) -> set[str]:
    (run,) = directory.glob("summary-*")  # a spec without filename: Tensorforce's subfolder
    accumulator = EventAccumulator(str(run), size_guidance={"scalars": 0})
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


def test_dqn_metrics_reach_tensorboard(tmp_path):
    summarizer = {
        "directory": str(tmp_path),
        "labels": ["loss", "q-value", "td-error", "exploration"],
    }
    runner = Runner(
        agent={**DQN, "summarizer": summarizer}, environment=IdentityEnvironment, seed=0
    )
    runner.run(num_timesteps=200, use_tqdm=False)
    runner.close()
    found = _events(tmp_path)
    assert {tags.LOSS_Q, tags.Q_VALUE, tags.TD_ERROR, tags.EXPLORATION} <= found
    assert tags.LEARNING_RATE not in found  # label not selected


def _identity_traces(directory: Path, episodes: int = 40, length: int = 8) -> None:
    """Optimal play on the identity task, rewards 1 per step."""
    rng = np.random.default_rng(0)
    for episode in range(episodes):
        targets = rng.integers(0, 4, size=length)
        states = np.eye(4, dtype=np.float32)[targets]
        terminals = np.zeros(length, np.int64)
        terminals[-1] = 1
        write_trace(directory, episode, states, targets, np.ones(length), terminals)


def _score(agent: Agent) -> float:
    env = Environment.create(IdentityEnvironment(seed=5))
    result = evaluate(agent, env, num_episodes=10)
    env.close()
    return result["return_mean"]


@pytest.mark.parametrize("objective", ["imitation", "replay"])
def test_pretraining_a_dqn_from_traces_improves_it(tmp_path, objective):
    _identity_traces(tmp_path)
    agent = Agent.create(agent=DQN, environment=IdentityEnvironment)
    before = _score(agent)
    metrics = agent.pretrain(
        tmp_path, num_iterations=4, num_traces=None, num_updates=150, objective=objective
    )
    after = _score(agent)
    assert before < 4.0 and after >= 7.5
    key = tags.LOSS_IMITATION if objective == "imitation" else tags.LOSS_Q
    assert np.isfinite(metrics[key])
    if objective == "replay":  # each trace entered the memory once, however many iterations
        assert len(agent.memory) == 40 * 8


def _target_traces(directory: Path, optimal: bool, episodes: int = 40, length: int = 8) -> None:
    """TargetEnvironment episodes: the optimal action, or random ones with their true reward."""
    rng = np.random.default_rng(1)
    for episode in range(episodes):
        states = rng.uniform(-1, 1, size=(length, 1)).astype(np.float32)
        actions = states.copy() if optimal else rng.uniform(-1, 1, size=(length, 1))
        rewards = -np.abs(actions - states).sum(1)
        terminals = np.zeros(length, np.int64)
        terminals[-1] = 1
        write_trace(directory, episode, states, actions.astype(np.float32), rewards, terminals)


CONTINUOUS = {
    "seed": 0,
    "device": "cpu",
    "network": {"type": "auto", "size": 32, "depth": 2, "activation": "relu"},
    "critic": {"type": "auto", "size": 32, "depth": 2, "activation": "relu"},
    "batch_size": 64,
    "learning_rate": 3e-3,
    "discount": 0.0,
}


def _target_score(agent: Agent) -> float:
    env = Environment.create(TargetEnvironment(seed=5))
    result = evaluate(agent, env, num_episodes=10)
    env.close()
    return result["return_mean"] / 8  # per step: random play scores about -2/3


@pytest.mark.parametrize("name", ["sac", "td3", "dpg"])
@pytest.mark.parametrize("objective", ["imitation", "replay"])
def test_pretraining_continuous_agents_from_traces(tmp_path, name, objective):
    _target_traces(tmp_path, optimal=objective == "imitation")
    agent = Agent.create(agent={"agent": name, **CONTINUOUS}, environment=TargetEnvironment)
    before = _target_score(agent)
    agent.pretrain(
        tmp_path, num_iterations=3, num_traces=None, num_updates=150, objective=objective
    )
    after = _target_score(agent)
    assert after > max(before, -0.6) and after > -0.25, (before, after)
