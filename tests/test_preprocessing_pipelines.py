"""State/reward preprocessing pipelines, layers shared across networks, multi-output policies."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from test_recurrent import CueEnvironment

from forceexp import Agent, Runner
from forceexp.core.preprocessing import INTERNALS_KEY
from forceexp.errors import ConfigError

SCALAR = dict(type="float", shape=(), min_value=-1.0, max_value=2.0)
CHOICE = dict(type="int", num_values=2)
PIPELINE = [
    dict(type="sequence", length=3, concatenate=False),
    dict(type="clipping", lower=-1.0, upper=1.0),
    dict(type="linear_normalization"),
]


def _ppo(**kwargs):
    options = dict(states=SCALAR, actions=CHOICE, max_episode_timesteps=20, rollout_length=50)
    return Agent.create("ppo", **{**options, **kwargs})


def _step(agent, values, rewards=None, terminals=None):
    """One act/observe of every slot; states ``values`` (one per slot)."""
    slots = list(range(len(values)))
    agent.act(np.asarray(values, np.float32), parallel=slots)
    rewards, terminals = rewards or [0.0] * len(values), terminals or [0] * len(values)
    agent.observe(reward=rewards, terminal=terminals, parallel=slots)


def test_sequence_clipping_normalization_per_slot_reset_at_episode_start():
    agent = _ppo(state_preprocessing=PIPELINE, parallel_interactions=2)
    spec = agent.state_specs["state"]
    assert spec.shape == (3,) and (spec.min_value, spec.max_value) == (-2.0, 2.0)
    assert agent.input_specs["state"].shape == ()
    _step(agent, [0.25, -0.5])
    _step(agent, [0.5, 1.5])
    _step(agent, [1.5, 0.0], terminals=[1, 0])  # slot 0's episode ends
    _step(agent, [-0.75, 0.5])
    stored = agent.buffer.states["state"][:4]  # (T, slots, 3): clipped to [-1, 1], then 2x
    expected_0 = [[0.25] * 3, [0.25, 0.25, 0.5], [0.25, 0.5, 1.0], [-0.75] * 3]
    expected_1 = [[-0.5] * 3, [-0.5, -0.5, 1.0], [-0.5, 1.0, 0.0], [1.0, 0.0, 0.5]]
    torch.testing.assert_close(stored[:, 0], 2.0 * torch.tensor(expected_0))
    torch.testing.assert_close(stored[:, 1], 2.0 * torch.tensor(expected_1))
    assert agent._fused is not None  # the auto MLP keeps the fast path on processed states


def test_reward_deltafier_per_slot_and_raw_episode_returns():
    agent = _ppo(reward_processing=dict(type="deltafier"), parallel_interactions=2)
    _step(agent, [0.0, 0.0], rewards=[1.0, 5.0])
    _step(agent, [0.0, 0.0], rewards=[3.0, 4.0], terminals=[1, 0])
    _step(agent, [0.0, 0.0], rewards=[10.0, 4.5])
    rewards = agent.buffer.reward[:3].tolist()
    assert rewards == [[0.0, 0.0], [2.0, -1.0], [0.0, 0.5]]
    assert agent.episodes == 1 and agent._episode_return.tolist() == [10.0, 13.5]


def test_tensorforce_names_and_per_state_pipelines():
    states = dict(
        image=dict(type="float", shape=(4, 4, 3), min_value=0.0, max_value=1.0),
        level=dict(type="float", shape=(), min_value=-1.0, max_value=2.0),
        count=dict(type="int", shape=(), num_values=3),
    )
    agent = Agent.create(
        "ppo",
        states=states,
        actions=CHOICE,
        max_episode_timesteps=20,
        state_preprocessing=dict(
            image=[dict(type="image", height=2, width=2, grayscale=True), "deltafier"],
            float=dict(type="clipping", upper=1.0),
        ),
    )
    assert agent.state_specs["image"].shape == (2, 2, 1)
    assert agent.state_specs["level"].max_value == 1.0 and agent.state_specs["count"].type == "int"
    default = Agent.create(
        "ppo", states=states, actions=CHOICE, preprocessing="linear_normalization"
    )
    assert sorted(default.preprocessing.pipelines) == ["image", "level"]  # bounded floats only


def test_statistics_and_sequence_buffers_are_saved_and_restored(tmp_path):
    pipeline = [dict(type="sequence", length=2), dict(type="exponential_normalization", decay=0.5)]
    agent = _ppo(state_preprocessing=pipeline, states=dict(type="float", shape=(2,)))
    for value in (1.0, 3.0, 2.0):
        agent.act(np.full(2, value, np.float32))
        agent.observe(reward=0.0)
    norm = agent.preprocessing.pipelines["state"].layers[1]
    assert not torch.equal(norm.mean, torch.zeros_like(norm.mean))
    agent.save(tmp_path, format="checkpoint")
    loaded = Agent.load(tmp_path)
    for key, value in agent.preprocessing.state_dict().items():
        torch.testing.assert_close(loaded.preprocessing.state_dict()[key], value)
    history = loaded.preprocessing.pipelines["state"].internals0
    assert history.tolist() == [[1.0, 2.0, 2.0]]  # flag, then the last input (2.0, 2.0)
    wider = Agent.load(tmp_path, parallel_interactions=3)  # histories restart, statistics kept
    assert wider.preprocessing.pipelines["state"].internals0.abs().sum() == 0
    torch.testing.assert_close(wider.preprocessing.pipelines["state"].layers[1].mean, norm.mean)
    with pytest.raises(ConfigError, match=r"exports the networks alone"):
        agent.save(tmp_path, format="onnx")


def test_replay_agent_stores_processed_states_and_keeps_its_fast_path():
    agent = Agent.create(
        "dqn",
        states=dict(type="float", shape=(2,)),
        actions=CHOICE,
        state_preprocessing=dict(type="sequence", length=2),
        batch_size=2,
        learning_starts=100,
    )
    assert agent._fast is not None
    for t in range(3):
        agent.act(np.array([t, -t], np.float32))
        agent.observe(reward=1.0, terminal=int(t == 2), next_states=np.array([3, -3], np.float32))
    stored = agent.memory.storage["states/state"][:3].tolist()  # previous input, then this one
    assert stored == [[0, 0, 0, 0], [0, 0, 1, -1], [1, -1, 2, -2]]
    following = agent.memory.storage["next_states/state"][2].tolist()
    assert following == [2, -2, 3, -3]  # the final state continues the episode's history


def test_dqn_with_frame_stacking_recalls_a_cue_a_memoryless_dqn_cannot():
    """The cue is shown at step 0 of 4; stacking 4 states keeps it in view (evaluation carries
    its own history through independent acts). Memoryless best: 2.5, recalling: 4."""
    agent = {
        "agent": "dqn",
        "seed": 0,
        "network": {"type": "auto", "size": 64, "depth": 1, "activation": "relu"},
        "memory": 5000,
        "learning_rate": 3e-3,
        "learning_starts": 200,
        "target_update_interval": 100,
        "discount": 0.9,
        "exploration": {
            "type": "linear",
            "num_steps": 1500,
            "initial_value": 1.0,
            "final_value": 0.05,
        },
    }
    returns = {}
    for stacked in (False, True):
        preprocessing = dict(type="sequence", length=4) if stacked else None
        spec = {**agent, "state_preprocessing": preprocessing}
        runner = Runner(agent=spec, environment=CueEnvironment, num_parallel=4, seed=0)
        runner.run(num_timesteps=3000, use_tqdm=False)
        returns[stacked] = runner.evaluate(num_episodes=20)["return_mean"]
        runner.close()
    assert returns[False] <= 2.5 + 1e-6 and returns[True] >= 3.8, returns


def test_independent_acts_carry_their_own_history_and_experience_processes_episodes():
    agent = _ppo(state_preprocessing=dict(type="sequence", length=3))
    _, internals = agent.act(np.float32(5.0), internals={}, independent=True)
    _, internals = agent.act(np.float32(7.0), internals=internals, independent=True)
    assert internals[INTERNALS_KEY]["state"][0].tolist() == [[1.0, 5.0, 7.0]]
    assert agent.preprocessing.pipelines["state"].internals0.abs().sum() == 0  # slots untouched
    steps = dict(actions=[0, 1, 0, 1], terminal=[0, 1, 0, 1], reward=[0.0] * 4)
    agent.experience(states=[1.0, 2.0, 3.0, 4.0], **steps)
    trace = agent._experiences[0]
    assert trace.states["state"].tolist() == [[1, 1, 1], [1, 1, 2], [3, 3, 3], [3, 3, 4]]


def test_pipeline_errors_name_the_layer():
    with pytest.raises(ConfigError, match=r"state_preprocessing.state\[0\]: Dense has trainable"):
        _ppo(state_preprocessing=dict(type="dense", size=4), states=dict(type="float", shape=(2,)))
    with pytest.raises(ConfigError, match=r"reward_processing: .* shape \(2,\); expected a scalar"):
        _ppo(reward_processing=dict(type="sequence", length=2))
    with pytest.raises(ConfigError, match=r"state_preprocessing.state\[0\]: .* has no input|rank"):
        _ppo(state_preprocessing="image")


# ------------------------------------------------------------------ layers shared across networks
TWO_STATES = dict(
    a=dict(type="float", shape=(3,), min_value=1.0, max_value=2.0),
    b=dict(type="float", shape=(2,)),
)
POLICY = [
    dict(type="retrieve", tensors="a"),
    dict(type="block", name="encoder", layers=[dict(type="dense", size=4)]),
]


def test_baseline_reuses_a_policy_layer_with_the_same_parameters():
    baseline = [dict(type="retrieve", tensors="a"), dict(type="reuse", layer="encoder")]
    agent = Agent.create("a2c", states=TWO_STATES, actions=CHOICE, network=POLICY, critic=baseline)
    encoder = agent.policy.network.layers[1]
    reuse = agent.policy.baseline.layers[1]
    assert reuse.shared is encoder
    weight = next(encoder.parameters())
    assert any(p is weight for p in agent.policy.baseline.parameters())
    assert sum(p is weight for p in agent.policy.parameters()) == 1  # counted once
    before = weight.detach().clone()
    optimizer = torch.optim.SGD(agent.policy.baseline.parameters(), lr=0.1)
    states = {"a": torch.rand(5, 3) + 1.0, "b": torch.rand(5, 2)}
    agent.policy.value(states).square().mean().backward()
    optimizer.step()
    assert not torch.equal(weight.detach(), before)  # a baseline update moved the policy layer
    with pytest.raises(ConfigError, match=r"baseline\[1\].layer: unknown named layer 'encodr'"):
        Agent.create(
            "a2c",
            states=TWO_STATES,
            actions=CHOICE,
            network=POLICY,
            critic=[dict(type="retrieve", tensors="a"), dict(type="reuse", layer="encodr")],
        )


# ------------------------------------------------------------------ single_output=False
def test_single_output_false_routes_each_action_embedding_to_its_head(tmp_path, caplog):
    network = [
        [
            dict(type="retrieve", tensors=["a"]),
            dict(type="dense", size=6),
            dict(type="register", tensor="first-embedding"),
        ],
        [dict(type="retrieve", tensors=["b", "first-embedding"]), dict(type="dense", size=5)],
    ]
    caplog.set_level(logging.INFO, logger="forceexp.agents.agent")
    agent = Agent.create(
        "tensorforce",
        states=TWO_STATES,
        actions=dict(first=CHOICE, second=dict(type="int", num_values=3)),
        objective="policy_gradient",
        reward_estimation=dict(horizon=2, estimate_advantage=True),
        update=4,
        policy=dict(network=network, single_output=False),
        max_episode_timesteps=5,
    )
    policy = agent.policy
    assert agent._fused is None and "a2c update: autograd path (no fast path" in caplog.text
    assert policy.heads["first"].linear.in_features == 6
    assert policy.heads["second"].linear.in_features == 5
    states = {"a": torch.rand(4, 3) + 1.0, "b": torch.rand(4, 2)}
    features = policy.network(states)
    embedding = policy.network.layers[1](states["a"])  # the registered dense output
    torch.testing.assert_close(policy.head_input("first", features), embedding)
    assert policy.head_input("second", features).shape == (4, 5)
    for _ in range(10):
        agent.act({"a": np.full(3, 1.5, np.float32), "b": np.zeros(2, np.float32)})
        agent.observe(reward=1.0)
    assert agent.updates >= 1
    agent.save(tmp_path)
    loaded = Agent.load(tmp_path)
    torch.testing.assert_close(loaded.policy.network(states), agent.policy.network(states))
    with pytest.raises(ConfigError, match=r"policy.network: 'auto' is invalid; expected a list"):
        Agent.create(
            "tensorforce",
            states=TWO_STATES,
            actions=CHOICE,
            objective="policy_gradient",
            policy=dict(network="auto", single_output=False),
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["ppo", "dqn"])
def test_pipelines_run_on_cuda(tmp_path, name):
    from forceexp import Runner
    from forceexp.environments.testing import IdentityEnvironment

    spec = dict(
        agent=name,
        device="cuda",
        seed=0,
        state_preprocessing=[dict(type="sequence", length=2), "exponential_normalization"],
        reward_processing="deltafier",
    )
    runner = Runner(agent=spec, environment=IdentityEnvironment, num_parallel=2, seed=0)
    runner.run(num_timesteps=300, use_tqdm=False)
    agent = runner.agent
    assert runner.updates > 0 and agent.preprocessing.pipelines["state"].internals0.is_cuda
    agent.save(tmp_path)
    loaded = Agent.load(tmp_path)
    for key, value in agent.preprocessing.state_dict().items():
        torch.testing.assert_close(loaded.preprocessing.state_dict()[key], value)
    runner.close()
