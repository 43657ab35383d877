"""Recurrent networks for the DQN family (internals in the replay memory) and for TRPO."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from forceexp import Agent, tags
from forceexp.core.distributions import Bernoulli, Beta
from forceexp.core.memory import ReplayMemory
from forceexp.core.natural_gradient import kl_divergence
from forceexp.environments.testing import CueMemoryEnvironment, MaskedChoiceEnvironment
from forceexp.errors import ConfigError
from forceexp.observers.base import Observer
from forceexp.specs import parse_specs

LSTM = "network.lstm"
RNN = {"type": "auto", "size": 8, "depth": 1, "rnn": 2}
STATES = {"type": "float", "shape": (3,)}


def _memory(n_step: int = 1) -> ReplayMemory:
    return ReplayMemory(
        parse_specs(STATES, "state"),
        parse_specs({"type": "int", "num_values": 2}, "action"),
        capacity=8,
        parallel=2,
        n_step=n_step,
        sampling="recent",
        internals={LSTM: (2, 4)},
    )


def _add(memory: ReplayMemory, step: int, terminal: int = 0, **internals: Any) -> None:
    rows = np.arange(2)
    acted = np.full((2, 2, 4), step, np.float32) + rows[:, None, None] / 10
    memory.add(
        rows,
        {"state": np.zeros((2, 3))},
        {},
        {"action": np.zeros(2, np.int64)},
        np.ones(2),
        np.full(2, terminal),
        {"state": np.zeros((2, 3))},
        {},
        **internals or {"internals": {LSTM: acted}, "next_internals": {LSTM: acted + 1}},
    )


@pytest.mark.parametrize("n_step", [1, 2])
def test_replay_memory_stores_and_returns_internals_exactly(n_step):
    memory = _memory(n_step)
    assert memory.bytes_per_transition == _memory(1).bytes_per_transition
    for step in range(3):
        _add(memory, step, terminal=int(step == 2))
    batch = memory.sample(6)  # 'recent': in the order written
    # n_step 2: windows emit the oldest step when full, all pending steps at the episode end
    written = {1: [0.0, 0.1, 1.0, 1.1, 2.0, 2.1], 2: [0.0, 0.1, 1.0, 2.0, 1.1, 2.1]}[n_step]
    assert torch.equal(batch.internals[LSTM][:, 0, 0], torch.tensor(written))
    # the internals following each window's last act: what the network holds on next_states
    following = {1: [1.0, 1.1, 2.0, 2.1, 3.0, 3.1], 2: [2.0, 2.1, 3.0, 3.0, 3.1, 3.1]}[n_step]
    assert torch.equal(batch.next_internals[LSTM][:, 1, 3], torch.tensor(following))
    restored = _memory(n_step)
    restored.load_state_dict(memory.state_dict())
    assert torch.equal(restored.sample(6).internals[LSTM], batch.internals[LSTM])
    with pytest.raises(ConfigError, match=r"memory.add.internals: missing 'network.lstm'"):
        _add(memory, 0, internals=None)


def _dqn(**kwargs: Any) -> Agent:
    spec = {
        "agent": "dqn",
        "states": STATES,
        "actions": {"type": "int", "shape": (2,), "num_values": 4},
        "network": RNN,
        "memory": 100,
        "batch_size": 4,
        "learning_starts": 4,
        "train_freq": 2,
        "target_update_interval": 8,
        "seed": 0,
        "device": "cpu",
    }
    return Agent.create(**{**spec, **kwargs})


def _episodes(agent: Agent, episodes: int, length: int = 5, parallel: int = 1) -> None:
    rng = np.random.default_rng(0)
    slots = np.arange(parallel)
    for _ in range(episodes):
        for t in range(length):
            states = rng.normal(size=(parallel, 3)).astype(np.float32)
            agent.act(states=states, parallel=slots)
            terminal = np.full(parallel, int(t == length - 1))
            agent.observe(reward=np.ones(parallel), terminal=terminal, parallel=slots)


def test_recurrent_dqn_carries_internals_per_slot_into_the_memory():
    agent = _dqn(parallel_interactions=2, memory=dict(capacity=100, type="recent"))
    assert agent._fast is None  # recurrent: the autograd path
    _episodes(agent, 2, parallel=2)
    assert agent.updates > 0
    assert all(x.abs().sum() == 0 for x in agent._internals.values())  # reset at episode ends
    batch = agent.memory.sample(20)  # both slots' 2 x 5 steps, interleaved by slot
    acted, following = batch.internals[LSTM], batch.next_internals[LSTM]
    starts = torch.tensor([t % 10 < 2 for t in range(20)])  # each slot's episode starts
    assert acted[starts].abs().sum() == 0 and (acted[~starts].abs().sum((1, 2)) > 0).all()
    assert torch.equal(acted[2:][~starts[2:]], following[:-2][~starts[2:]])  # per slot


def test_recurrent_dqn_acts_from_given_internals_and_saves_and_loads(tmp_path):
    agent = _dqn(agent="double_dqn")
    _episodes(agent, 3)
    state = np.linspace(-1, 1, 3).astype(np.float32)
    internals = agent.initial_internals()
    assert internals[LSTM].shape == (2, 8)
    actions = []
    for _ in range(3):
        action, internals = agent.act(
            states=state, internals=internals, independent=True, deterministic=True
        )
        actions.append(action)
    with torch.no_grad():
        zeros = {LSTM: torch.zeros(1, 2, 8)}
        _, first = agent.q.step({"state": torch.from_numpy(state)[None]}, zeros)
    assert np.allclose(
        agent.act(states=state, internals=agent.initial_internals(), independent=True)[1][LSTM],
        first[LSTM][0],
    )
    for format in ("checkpoint", "numpy"):
        agent.save(directory=str(tmp_path / format), format=format)
        loaded = Agent.load(directory=str(tmp_path / format))
        replay, following = [], loaded.initial_internals()
        for _ in range(3):
            action, following = loaded.act(
                states=state, internals=following, independent=True, deterministic=True
            )
            replay.append(action)
        assert np.array_equal(np.array(replay), np.array(actions))
        assert np.allclose(following[LSTM], internals[LSTM])
    with pytest.raises(ConfigError, match=r"act.internals: .* expected a dict with keys"):
        agent.act(states=state, internals={"other": 0}, independent=True)


def test_recurrent_dqn_full_checkpoint_keeps_the_stored_internals(tmp_path):
    agent = _dqn()
    _episodes(agent, 2)
    agent.save(directory=str(tmp_path), format="checkpoint", memory=True)
    loaded = Agent.load(directory=str(tmp_path))
    key = f"internals/{LSTM}"
    assert np.array_equal(loaded.memory.storage[key], agent.memory.storage[key])


def test_recurrent_dqn_experience_with_and_without_internals():
    agent = _dqn(agent="dueling_dqn")
    rng = np.random.default_rng(1)
    states = [rng.normal(size=3).astype(np.float32) for _ in range(4)]
    internals, acted = agent.initial_internals(), []
    for state in states:
        acted.append(internals)
        _, internals = agent.act(states=state, internals=internals, independent=True)
    actions = [np.array([1, 2])] * 4
    given = dict(states=states, actions=actions, terminal=[0, 0, 0, 1], reward=[0, 0, 0, 1.0])
    agent.experience(**given, internals=acted)
    agent.experience(**given)  # the same episode: internals from a run of the network
    agent.update()  # both enter the memory, then a training phase
    stored = agent.memory.storage[f"internals/{LSTM}"]
    assert len(agent.memory) == 8
    assert np.array_equal(stored[:4], np.stack([x[LSTM] for x in acted]))
    assert np.allclose(stored[4:8], stored[:4], atol=1e-6)  # the network ran the same steps
    with pytest.raises(ConfigError, match=r"experience.internals\['network.lstm'\]"):
        agent.experience(**given, internals={LSTM: np.zeros((3, 2, 8))})


def test_recurrent_dqn_honours_action_masks():
    env = MaskedChoiceEnvironment()
    agent = Agent.create(
        agent="dqn",
        environment=env,
        network=RNN,
        memory=100,
        batch_size=4,
        learning_starts=0,
        train_freq=1,
        seed=0,
        device="cpu",
    )
    states = env.reset()
    for _ in range(60):
        action = agent.act(states=states)
        assert states["action_mask"][action]
        states, terminal, reward = env.execute(actions=action)
        agent.observe(reward=reward, terminal=terminal)
        if terminal:
            states = env.reset()
    assert agent.updates > 0


def test_recurrent_dqn_cannot_be_exported(tmp_path):
    agent = _dqn()
    for format in ("onnx", "torchscript", "numpy_policy"):
        with pytest.raises(ConfigError, match=r"Q network is recurrent"):
            agent.save(directory=str(tmp_path), format=format)


def _greedy_return(agent: Agent, env: CueMemoryEnvironment, episodes: int) -> float:
    total = 0.0
    for _ in range(episodes):
        states, internals, terminal = env.reset(), agent.initial_internals(), 0
        while not terminal:
            action, internals = agent.act(
                states=states, internals=internals, independent=True, deterministic=True
            )
            states, terminal, reward = env.execute(actions=action)
            total += reward
    return total / episodes


def _learn_cue(rnn: int | bool) -> float:
    env = CueMemoryEnvironment(delay=1, seed=0)
    agent = Agent.create(
        agent="dqn",
        environment=env,
        network={"type": "auto", "size": 16, "depth": 1, "rnn": rnn},
        memory=2000,
        batch_size=32,
        learning_rate=3e-3,
        learning_starts=50,
        train_freq=1,
        target_update_interval=50,
        discount=0.9,
        exploration={"type": "linear", "num_steps": 300, "initial_value": 1.0, "final_value": 0.05},
        seed=0,
        device="cpu",
    )
    states = env.reset()
    for _ in range(500):
        action = agent.act(states=states)
        states, terminal, reward = env.execute(actions=action)
        agent.observe(reward=reward, terminal=terminal)
        if terminal:
            states = env.reset()
    return _greedy_return(agent, env, 100)


def test_recurrent_dqn_remembers_a_cue_that_a_feed_forward_dqn_cannot():
    assert _learn_cue(1) >= 0.95
    assert _learn_cue(False) <= 0.7  # the query state alone: a coin flip


class Updates(Observer):
    """Keeps each update's metrics."""

    def __init__(self, metrics: list[dict[str, float]]) -> None:
        self.metrics = metrics

    def on_update(self, agent: Agent, metrics: dict[str, float]) -> None:
        self.metrics.append(metrics)


def _trpo(**kwargs: Any) -> Agent:
    spec = {
        "agent": "trpo",
        "states": STATES,
        "actions": {
            "choice": {"type": "int", "shape": (2,), "num_values": 3},
            "flag": {"type": "bool", "shape": (1,)},
            "level": {"type": "float", "min_value": 1.0, "max_value": 2.0},
        },
        "network": RNN,
        "baseline": {"type": "auto", "size": 7, "depth": 1, "rnn": 1},
        "bounded_actions": "beta",
        "rollout_length": 4,
        "minibatch_size": 4,
        "value_epochs": 2,
        "seed": 0,
        "device": "cpu",
    }
    return Agent.create(**{**spec, **kwargs})


def test_recurrent_trpo_updates_within_the_trust_region_and_saves_and_loads(tmp_path):
    agent = _trpo(parallel_interactions=2)
    before = [p.detach().clone() for p in agent.policy.network.parameters()]
    metrics = []
    agent.observers.append(Updates(metrics))
    _episodes(agent, 3, length=3, parallel=2)
    assert agent.updates >= 2 and metrics
    assert all(m[tags.KL_DIVERGENCE] <= agent.max_kl + 1e-6 for m in metrics)
    after = agent.policy.network.parameters()
    assert any(
        not torch.equal(p, q) for p, q in zip(after, before, strict=True)
    )  # the LSTM's policy took natural-gradient steps
    state = np.ones(3, np.float32)
    agent.save(directory=str(tmp_path), format="numpy")
    loaded = Agent.load(directory=str(tmp_path))
    for each in (agent, loaded):
        internals = each.initial_internals()
        assert set(internals) == {LSTM, "baseline.lstm"}
        action, _ = each.act(
            states=state, internals=internals, independent=True, deterministic=True
        )
        assert action["choice"].shape == (2,)
    updates = agent.updates
    agent.experience(
        states=[state] * 3,
        actions=[{"choice": np.array([0, 2]), "flag": np.array([True]), "level": 1.5}] * 3,
        terminal=[0, 0, 1],
        reward=[0.0, 1.0, 0.0],
    )
    assert (
        agent.update()[tags.KL_DIVERGENCE] <= agent.max_kl + 1e-6 and agent.updates == updates + 1
    )


def test_trpo_kl_of_bernoulli_and_beta_matches_torch():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 3, generator=generator)
    kl = kl_divergence(Bernoulli(logits[0], 1), Bernoulli(logits[1], 1))
    reference = torch.distributions.kl_divergence(
        torch.distributions.Bernoulli(logits=logits[0]),
        torch.distributions.Bernoulli(logits=logits[1]),
    )
    assert torch.allclose(kl, reference.sum(-1), atol=1e-6)
    a, b = torch.rand(2, 5, 3, generator=generator).mul(3).add(0.5).unbind(0)
    kl = kl_divergence(Beta(a, b, 1), Beta(b, a, 1))
    reference = torch.distributions.kl_divergence(
        torch.distributions.Beta(a, b), torch.distributions.Beta(b, a)
    )
    assert torch.allclose(kl, reference.sum(-1), atol=1e-5)


def test_trpo_pretraining_offers_replay_only():
    agent = _trpo()
    with pytest.raises(ConfigError, match=r"pretrain.objective: 'imitation' is invalid"):
        agent.learn_from_traces([], "imitation", 1)


@pytest.mark.parametrize("kind", ["dpg", "td3", "sac"])
def test_recurrent_actors_of_the_continuous_agents(tmp_path, kind):
    agent = Agent.create(
        agent=kind,
        states=STATES,
        actions={"type": "float", "shape": (2,), "min_value": -1.0, "max_value": 2.0},
        network=RNN,
        critic={"type": "auto", "size": 8, "depth": 1},
        memory=100,
        batch_size=4,
        learning_starts=4,
        seed=0,
        device="cpu",
    )
    assert agent._fast is None and set(agent.initial_internals()) == {LSTM}
    before = [p.detach().clone() for p in agent.actor.network.parameters()]
    _episodes(agent, 2, parallel=1)
    assert agent.updates > 0
    after = agent.actor.network.parameters()
    assert any(not torch.equal(p, q) for p, q in zip(after, before, strict=True))
    stored = agent.memory.storage[f"internals/{LSTM}"][: len(agent.memory)]
    assert (stored[[0, 5]] == 0).all() and (stored[[1, 2, 3, 4]] != 0).any(axis=(1, 2)).all()
    state = np.ones(3, np.float32)
    acted, internals = agent.act(
        states=state, internals=agent.initial_internals(), independent=True, deterministic=True
    )
    agent.save(directory=str(tmp_path), format="numpy")
    loaded = Agent.load(directory=str(tmp_path))
    again, following = loaded.act(
        states=state, internals=loaded.initial_internals(), independent=True, deterministic=True
    )
    assert np.allclose(again, acted) and np.allclose(following[LSTM], internals[LSTM])
    agent.experience(
        states=[state] * 3, actions=[np.zeros(2)] * 3, terminal=[0, 0, 1], reward=[0, 0, 1.0]
    )
    agent.update()
    assert len(agent.memory) == 13
    with pytest.raises(ConfigError, match=r"actor network is recurrent"):
        agent.save(directory=str(tmp_path), format="onnx")


def _trpo_cue(rnn: int | bool) -> float:
    env = CueMemoryEnvironment(delay=1, seed=0)
    network = {"type": "auto", "size": 16, "depth": 1, "rnn": rnn}
    agent = Agent.create(
        agent="trpo",
        environment=env,
        network=network,
        baseline=network,
        rollout_length=64,
        minibatch_size=64,
        max_kl=0.05,
        seed=0,
        device="cpu",
    )
    states = env.reset()
    for _ in range(1000):
        action = agent.act(states=states)
        states, terminal, reward = env.execute(actions=action)
        agent.observe(reward=reward, terminal=terminal)
        if terminal:
            states = env.reset()
    return _greedy_return(agent, env, 100)


@pytest.mark.slow
def test_recurrent_trpo_remembers_a_cue_that_a_feed_forward_trpo_cannot():
    assert _trpo_cue(1) >= 0.95  # about 15 s: every CG product re-runs the sequences
    assert _trpo_cue(False) <= 0.7
