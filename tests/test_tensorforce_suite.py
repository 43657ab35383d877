"""Behaviours Tensorforce's own test suite relies on (``tools/tensorforce_audit.py``), ours."""

import numpy as np
import pytest
import torch

from forceexp import Agent
from forceexp.errors import ConfigError

STATES = {"type": "float", "shape": (3,)}
ACTIONS = {"type": "int", "num_values": 3}


def _run(agent: Agent, steps: int, seed: int = 0) -> int:
    """Act/observe ``steps`` random-state steps (episodes of 5); return the updates run."""
    rng = np.random.default_rng(seed)
    updates = 0
    for t in range(steps):
        agent.act(states=rng.normal(size=3).astype(np.float32))
        updates += agent.observe(reward=float(rng.normal()), terminal=(t + 1) % 5 == 0)
    return updates


def _a2c(**kwargs) -> Agent:
    base = {"states": STATES, "actions": ACTIONS, "max_episode_timesteps": 5, "device": "cpu"}
    return Agent.create(agent="a2c", **{**base, "seed": 0, "rollout_length": 5, **kwargs})


def test_tracking_all_reports_the_latest_update_under_tensorforce_names():
    agent = _a2c(tracking="all", entropy_regularization=0.01)
    assert agent.tracked_tensors() == {}
    assert _run(agent, 10) == 2
    tracked = agent.tracked_tensors()
    for name in ("agent/policy-objective-loss", "agent/baseline-objective-loss", "agent/entropy"):
        assert np.isfinite(tracked[name])
    assert tracked["agent/episode-length"] == 5
    assert 0.0 < tracked["agent/entropy"] <= np.log(3) + 1e-6


def test_tracking_a_list_keeps_only_those_names():
    agent = _a2c(tracking=["agent/entropy", "losses/value_loss"])
    _run(agent, 5)
    assert set(agent.tracked_tensors()) == {"agent/entropy", "agent/baseline-objective-loss"}
    assert _a2c().tracked_tensors() == {}
    with pytest.raises(ConfigError, match=r"agent.tracking: 'some' is invalid"):
        _a2c(tracking="some")


def test_generic_agent_is_the_default_for_a_dict_with_an_objective():
    spec = {"objective": "policy_gradient", "reward_estimation": {"horizon": "episode"}}
    agent = Agent.create(agent=spec, states=STATES, actions=ACTIONS, max_episode_timesteps=5)
    assert agent.name == "vpg"


def test_auto_network_rnn_appends_an_lstm_with_the_horizon():
    agent = _a2c(network=dict(type="auto", size=8, depth=1, rnn=2), baseline="auto")
    network = agent.policy.network
    assert network.lstm.horizon == 2 and network.lstm.size == 8
    assert network.internal_shapes == {"network.lstm": (2, 8)}
    assert agent.initial_internals()["network.lstm"].shape == (2, 8)
    states = {"state": torch.randn(4, 3)}
    zeros = {"network.lstm": torch.zeros(4, 2, 8)}
    stepped, following = network.step(states, zeros)
    assert torch.allclose(stepped, network(states)) and following["network.lstm"].abs().sum() > 0
    assert _run(agent, 10) == 2  # acts with per-slot internals, re-runs sequences in updates
    _, internals = agent.act(
        states=np.zeros(3, np.float32), internals=agent.initial_internals(), independent=True
    )
    assert internals["network.lstm"].shape == (2, 8)


def test_auto_network_rnn_is_refused_where_internals_are_not_carried():
    with pytest.raises(ConfigError, match=r"network.lstm: this layer keeps internals"):
        Agent.create(agent="dqn", states=STATES, actions=ACTIONS, network=dict(type="auto", rnn=1))
    with pytest.raises(ConfigError, match=r"baseline: recurrent layers are only supported"):
        _a2c(baseline=dict(type="auto", rnn=1))
