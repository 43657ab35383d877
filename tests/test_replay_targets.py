"""Replay agents' TD targets: return clipping, bool-action DQN, the generic value objectives."""

import numpy as np
import pytest
import torch

from forceexp import Agent
from forceexp.core.memory import ReplaySample
from forceexp.errors import ConfigError

CLIPPING = {"type": "clipping", "lower": -1.0, "upper": 2.0}


def _batch(actions, rewards, discounts):
    """A batch of ``len(rewards)`` transitions with zero states (shape (3,))."""
    zeros = torch.zeros(len(rewards), 3)
    return ReplaySample(
        states={"state": zeros},
        masks={},
        actions=actions,
        rewards=torch.tensor(rewards),
        next_states={"state": zeros},
        next_masks={},
        discounts=torch.tensor(discounts),
        weights=torch.ones(len(rewards)),
        indices=np.arange(len(rewards)),
    )


def _constant(linear, values):
    """Make a linear layer output ``values`` whatever its input."""
    torch.nn.init.zeros_(linear.weight)
    with torch.no_grad():
        linear.bias.copy_(torch.tensor(values))


def test_return_processing_clips_dqn_targets_to_the_bounds():
    agent = Agent.create(
        agent="dqn",
        states={"type": "float", "shape": (3,)},
        actions={"type": "int", "num_values": 2},
        return_processing=CLIPPING,
        seed=0,
    )
    assert agent.return_clipping == (-1.0, 2.0)
    _constant(agent.target.heads["action"], [4.0, 3.0])  # max_a' Q_target(s', a') = 4
    batch = _batch(
        {"action": torch.zeros(3, dtype=torch.int64)}, [-3.0, 0.5, 1.0], [0.0, 0.25, 0.5]
    )
    targets = agent.td_targets(batch)["action"]
    # unclipped: -3, 0.5 + 0.25 * 4 = 1.5, 1 + 0.5 * 4 = 3
    torch.testing.assert_close(targets, torch.tensor([-1.0, 1.5, 2.0]))
    # the numpy (fast-path) form clips alike
    rewards, discounts = np.array([-3.0, 0.5, 1.0]), np.array([0.0, 0.25, 0.5])
    np.testing.assert_allclose(agent.td_target(rewards, discounts, np.full(3, 4.0)), [-1, 1.5, 2])


def test_return_processing_clips_td3_targets_and_reaches_ddpg_and_sac():
    agent = Agent.create(
        agent="td3",
        states={"type": "float", "shape": (3,)},
        actions={"type": "float", "shape": (1,), "min_value": -1.0, "max_value": 1.0},
        return_processing=CLIPPING,
        seed=0,
    )
    for critic in agent.critic_targets:  # Q_target(s', a') = 3 and 5: the smaller is 3
        _constant(critic.output, [3.0 if critic is agent.critic_targets[0] else 5.0])
    batch = _batch({"action": torch.zeros(3, 1)}, [-2.0, 0.2, 1.0], [0.0, 0.5, 1.0])
    torch.testing.assert_close(agent.target_values(batch), torch.tensor([-1.0, 1.7, 2.0]))
    for name in ("ddpg", "sac"):
        other = Agent.create(
            agent=name,
            states={"type": "float", "shape": (3,)},
            actions={"type": "float", "shape": (1,), "min_value": -1.0, "max_value": 1.0},
            return_processing=CLIPPING,
        )
        assert other.return_clipping == (-1.0, 2.0)
    with pytest.raises(ConfigError, match=r"agent.return_clipping: \(2.0, 1.0\) is invalid"):
        Agent.create(
            agent="dqn",
            states=dict(type="float", shape=(3,)),
            actions=dict(type="int", num_values=2),
            return_clipping=(2.0, 1.0),
        )
    with pytest.raises(ConfigError, match=r"agent.return_processing: 'linear_normalization'"):
        Agent.create(
            agent="dqn",
            states=dict(type="float", shape=(3,)),
            actions=dict(type="int", num_values=2),
            return_processing="linear_normalization",
        )


def test_bool_action_dqn_learns_the_sign_of_its_state():
    """A contextual bandit: reward 1 when the bool action equals ``state > 0``."""
    agent = Agent.create(
        agent="dqn",
        states={"type": "float", "shape": (1,)},
        actions={"type": "bool", "shape": (1,)},
        network=[{"type": "dense", "size": 16}],
        discount=0.0,
        learning_starts=32,
        train_freq=1,
        target_update_interval=20,
        learning_rate=1e-2,
        exploration=0.1,
        seed=0,
    )
    assert agent.q.shapes["action"] == (1, 2)
    rng = np.random.default_rng(0)
    for _ in range(600):
        state = rng.uniform(-1, 1, size=1).astype(np.float32)
        action = agent.act(states=state)
        assert action.dtype == np.bool_ and action.shape == (1,)
        agent.observe(reward=float(action[0] == (state[0] > 0)), terminal=False)
    assert agent.updates > 0
    tests = rng.uniform(-1, 1, size=(50, 1)).astype(np.float32)
    greedy = [agent.act(states=s, independent=True, deterministic=True)[0] for s in tests]
    assert np.mean(np.array(greedy) == (tests[:, 0] > 0)) >= 0.9


UNITTEST_STATES = {
    "bool_state": {"type": "bool", "shape": (1,)},
    "int_state": {"type": "int", "shape": (1, 2), "num_values": 4},
    "float_state": {"type": "float", "shape": (), "min_value": 1.0, "max_value": 2.0},
}
UNITTEST_ESTIMATION = {
    "horizon": 3,
    "estimate_advantage": True,
    "predict_horizon_values": "late",
    "return_processing": {"type": "clipping", "lower": -1.0, "upper": 1.0},
    "advantage_processing": "batch_normalization",
}


def _run_generic(actions, steps=150, **spec):
    """The generic agent with Tensorforce's unittest spec: act/observe until updates ran."""
    agent = Agent.create(
        agent="tensorforce",
        states=UNITTEST_STATES,
        actions=actions,
        max_episode_timesteps=10,
        update=4,
        optimizer={"optimizer": "adam", "learning_rate": 1e-3},
        baseline={"network": {"type": "auto", "size": 7, "depth": 1, "rnn": False}},
        baseline_optimizer={"optimizer": "adam", "learning_rate": 1e-3},
        seed=0,
        **spec,
    )
    rng = np.random.default_rng(0)
    for t in range(steps):
        states = {
            "bool_state": rng.random(1) < 0.5,
            "int_state": rng.integers(0, 4, size=(1, 2)),
            "float_state": np.float32(rng.uniform(1, 2)),
        }
        agent.act(states=states)
        agent.observe(reward=float(rng.normal() * 5), terminal=t % 10 == 9)
    assert agent.updates > 0
    return agent


def test_generic_value_objective_on_bool_and_int_actions_updates(caplog):
    actions = {
        "bool_action": {"type": "bool", "shape": (1,)},
        "int_action1": {"type": "int", "shape": (), "num_values": 4},
        "int_action3": {"type": "int", "shape": (2, 1), "num_values": 2},
    }
    with caplog.at_level("WARNING", logger="forceexp.agents.tensorforce"):
        agent = _run_generic(
            actions,
            objective={"type": "value", "value": "action"},
            policy={"network": {"type": "auto", "size": 8, "depth": 1, "rnn": 2}},
            reward_estimation={
                **UNITTEST_ESTIMATION,
                "reward_processing": {"type": "clipping", "lower": -1.0, "upper": 1.0},
            },
            baseline_objective="state_value",
            entropy_regularization=0.0,
        )
    assert agent.name == "dqn" and agent.n_step == 3
    assert agent.return_clipping == (-1.0, 1.0)
    assert "not onto the advantage" in caplog.text  # the deviation is stated
    batch = agent.memory.sample(8)
    assert all(float(t.abs().max()) <= 1.0 for t in agent.td_targets(batch).values())


def test_generic_deterministic_policy_gradient_updates():
    actions = {
        "gaussian_action1": {"type": "float", "shape": (1, 2), "min_value": 1.0, "max_value": 2.0},
        "beta_action": {"type": "float", "shape": (), "min_value": 1.0, "max_value": 2.0},
    }
    agent = _run_generic(
        actions,
        objective="deterministic_policy_gradient",
        policy={
            "network": {"type": "auto", "size": 8, "depth": 1, "rnn": False},
            "distributions": {"beta_action": "beta"},
        },
        reward_estimation={**UNITTEST_ESTIMATION, "predict_action_values": True},
        baseline_objective="action_value",
        entropy_regularization=0.01,
    )
    assert agent.name == "dpg" and agent.return_clipping == (-1.0, 1.0)
