"""Recurrent layers (rnn/lstm/gru): shapes, internals through act, and PPO's sequence update."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from forceexp import Agent, Runner, tags
from forceexp.config import build_network
from forceexp.environments.environment import TERMINATED, Environment
from forceexp.errors import ConfigError
from forceexp.specs import parse_specs

torch.set_num_threads(1)
VECTOR = parse_specs({"type": "float", "shape": (3,)}, "state")


def _agent(kind: str = "lstm", **kwargs: Any) -> Agent:
    spec = {
        "agent": "ppo",
        "states": {"type": "float", "shape": (3,)},
        "actions": {"type": "int", "num_values": 2},
        "network": [{"type": "dense", "size": 8}, {"type": kind, "size": 5}],
        "rollout_length": 4,
        "minibatch_size": 8,
        "epochs": 2,
        "seed": 0,
        "device": "cpu",
    }
    return Agent.create(**{**spec, **kwargs})


@pytest.mark.parametrize(("kind", "internal"), [("rnn", (5,)), ("gru", (5,)), ("lstm", (2, 5))])
def test_recurrent_layer_shapes_and_steps(kind, internal):
    network = build_network([{"type": "dense", "size": 4}, {"type": kind, "size": 5}], VECTOR)
    assert network.internal_shapes == {"network[1]": internal}
    states = {"state": torch.randn(6, 3)}
    features, following = network.step(states, {"network[1]": torch.zeros(6, *internal)})
    assert features.shape == (6, 5) and following["network[1]"].shape == (6, *internal)
    again, _ = network.step(states, following)
    assert not torch.allclose(features, again)  # the internals change the output
    assert torch.allclose(network(states), features)  # plain forward starts from zeros


def test_recurrent_layer_errors():
    image = parse_specs({"type": "float", "shape": (4, 4, 3)}, "state")
    with pytest.raises(ConfigError, match=r"network\[0\]: lstm expects a rank-1 input"):
        build_network([{"type": "lstm", "size": 4}], image)
    with pytest.raises(ConfigError, match=r"network\[0\]\.size: 0 is invalid"):
        build_network([{"type": "gru", "size": 0}], VECTOR)
    recurrent_baseline = _agent(baseline=[{"type": "lstm", "size": 4}])  # carries its own
    assert set(recurrent_baseline.initial_internals()) == {"network[1]", "baseline[0]"}
    with pytest.raises(ConfigError, match="recurrent policy network needs its own baseline"):
        _agent(baseline=None)


def test_lstm_internals_round_trip_through_independent_act():
    agent = _agent()
    internals = agent.initial_internals()
    assert set(internals) == {"network[1]"} and internals["network[1]"].shape == (2, 5)
    assert not internals["network[1]"].any()
    state = np.ones(3, dtype=np.float32)
    action, following = agent.act(state, internals=internals, independent=True)
    assert 0 <= int(action) < 2
    assert following["network[1]"].shape == (2, 5) and following["network[1]"].any()
    _, second = agent.act(state, internals=following, independent=True, deterministic=True)
    assert not np.allclose(second["network[1]"], following["network[1]"])
    # batched: one row of internals per state
    batch = {"network[1]": np.stack([internals["network[1]"], following["network[1]"]])}
    actions, nexts = agent.act(
        np.ones((2, 3), np.float32), internals=batch, parallel=[0, 0], independent=True
    )
    assert actions.shape == (2,) and nexts["network[1]"].shape == (2, 2, 5)
    assert np.allclose(nexts["network[1]"][1], second["network[1]"], atol=1e-6)
    assert agent.timesteps == 0  # independent acts store nothing
    with pytest.raises(ConfigError, match=r"act\.internals: .* expected a dict with keys"):
        agent.act(state, internals={"wrong": 0}, independent=True)
    with pytest.raises(ConfigError, match=r"act\.internals\['network\[1\]'\]: shape \(5,\)"):
        agent.act(state, internals={"network[1]": np.zeros(5)}, independent=True)
    agent.close()


def test_agent_carries_internals_and_resets_them_at_episode_ends():
    agent = _agent(parallel_interactions=2, rollout_length=50)
    states = np.ones((2, 3), np.float32)
    agent.act(states)
    carried = agent._internals["network[1]"].clone()
    assert carried.abs().sum() > 0
    agent.observe(reward=[0.0, 0.0], terminal=[1, 0], parallel=[0, 1])
    assert not agent._internals["network[1]"][0].any()
    assert torch.equal(agent._internals["network[1]"][1], carried[1])
    agent.reset()
    assert not agent._internals["network[1]"].any()
    agent.close()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_sequence_rerun_reproduces_the_acting_log_probs(kind):
    """Stored first internals + resets at episode starts give exactly the acting log-probs."""
    agent = _agent(kind, parallel_interactions=3, rollout_length=40)
    rng = np.random.default_rng(0)
    for _ in range(30):
        agent.act(rng.random((3, 3), dtype=np.float32) * 3)
        terminals = (rng.random(3) < 0.2).astype(int)
        agent.observe(reward=rng.random(3), terminal=terminals, parallel=[0, 1, 2])
    assert agent.updates == 0
    seq = agent.buffer.sequences(torch.zeros(3), 0.9, 0.9)
    assert seq.starts.any() and seq.valid.all()
    with torch.no_grad():
        features = agent.policy.sequence_features(seq.states, seq.internals, seq.starts)
        log_prob, _, _ = agent.policy.evaluate_features(
            features.flatten(0, 1),
            {n: x.flatten(0, 1) for n, x in seq.states.items()},
            {n: x.flatten(0, 1) for n, x in seq.actions.items()},
            {},
        )
        assert torch.allclose(log_prob, seq.log_prob.flatten(), atol=1e-5)
        unreset = agent.policy.sequence_features(
            seq.states, seq.internals, torch.zeros_like(seq.starts)
        )
        assert not torch.allclose(unreset, features, atol=1e-4)  # the resets matter
    agent.close()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_ppo_update_reruns_sequences_exactly(kind):
    """With learning rate 0 the update's minibatches see ratio 1 (no KL, nothing clipped)."""
    agent = _agent(kind, parallel_interactions=3, rollout_length=6, learning_rate=0.0)
    rng = np.random.default_rng(0)
    updates: list = []
    agent.observers.append(_Metrics(updates))
    for _ in range(40):
        agent.act(rng.random((3, 3), dtype=np.float32))
        terminals = (rng.random(3) < 0.25).astype(int)
        agent.observe(reward=rng.random(3), terminal=terminals, parallel=[0, 1, 2])
    assert len(updates) >= 5
    for metrics in updates:
        assert abs(metrics[tags.KL_DIVERGENCE]) < 1e-6, metrics
        assert metrics[tags.CLIP_FRACTION] == 0.0
    agent.close()


def test_ppo_update_with_an_lstm_policy_changes_the_weights():
    agent = _agent(parallel_interactions=2)
    before = [p.detach().clone() for p in agent.policy.network.parameters()]
    for t in range(8):
        agent.act(np.random.rand(2, 3).astype(np.float32))
        agent.observe(reward=[1.0, 0.0], terminal=[int(t % 3 == 2), 0], parallel=[0, 1])
    assert agent.updates >= 1
    after = list(agent.policy.network.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    agent.close()


class _Metrics:
    """Observer collecting update metrics."""

    def __init__(self, out: list) -> None:
        self.out = out

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None

    def on_update(self, agent: Agent, metrics: dict) -> None:
        self.out.append(metrics)


class CueEnvironment(Environment):
    """A cue (one of two) is shown only at step 0; every step rewards repeating it.

    A memoryless policy scores 1 + 0.5 * (length - 1); one that recalls the cue scores length.
    """

    def __init__(self, length: int = 4, seed: int = 0) -> None:
        self.length, self._rng = length, np.random.default_rng(seed)
        self._cue, self._t = 0, 0

    def states(self) -> dict[str, Any]:
        """Cue one-hot at step 0, zeros afterwards, plus a 'started' flag."""
        return {"type": "float", "shape": (3,)}

    def actions(self) -> dict[str, Any]:
        """Which cue was shown."""
        return {"type": "int", "shape": (), "num_values": 2}

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Draw a cue and show it."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._cue, self._t = int(self._rng.integers(2)), 0
        state = np.zeros(3, np.float32)
        state[self._cue] = 1.0
        return state

    def execute(self, actions: Any) -> tuple[np.ndarray, int, float]:
        """Reward 1 for naming the cue; the next state hides it."""
        reward = float(int(actions) == self._cue)
        self._t += 1
        state = np.array([0.0, 0.0, 1.0], np.float32)
        return state, TERMINATED if self._t >= self.length else 0, reward


@pytest.mark.slow
def test_ppo_with_lstm_learns_to_recall_a_cue():
    agent = {
        "agent": "ppo",
        "seed": 0,
        "device": "cpu",
        "network": [{"type": "dense", "size": 32}, {"type": "lstm", "size": 32}],
        "rollout_length": 16,
        "minibatch_size": 64,
        "epochs": 4,
        "learning_rate": 3e-3,
        "discount": 0.9,
    }
    runner = Runner(agent=agent, environment=CueEnvironment, num_parallel=8, seed=0)
    runner.run(num_timesteps=6000, use_tqdm=False)
    result = runner.evaluate(num_episodes=20)
    runner.close()
    assert np.mean(runner.episode_returns[:40]) < 3.0  # random: 2 of 4
    assert result["return_mean"] > 3.6, result  # memoryless best: 2.5


def test_train_with_the_lstm_network_config(compose_cfg):
    from forceexp.experiment import train

    cfg = compose_cfg("agent=ppo", "env=identity", "network=lstm", "runner.num_parallel=2")
    result = train(cfg)
    assert result["timesteps"] >= 256 and result["updates"] >= 1
