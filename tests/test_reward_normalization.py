"""Reward normalization: the running return statistic, its reset, saving, and learning with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forceexp import Agent, Runner
from forceexp.core.normalization import RewardNormalizer, reward_normalizer
from forceexp.environments.testing import IdentityEnvironment
from forceexp.errors import ConfigError

DISCRETE = {"states": {"type": "float", "shape": (2,)}, "actions": {"type": "int", "num_values": 2}}
CONTINUOUS = {
    "states": {"type": "float", "shape": (2,)},
    "actions": {"type": "float", "shape": (1,), "min_value": -1.0, "max_value": 1.0},
}


def _hand_statistics(rewards: np.ndarray, terminals: np.ndarray, discount: float):
    """SB3 VecNormalize's ret_rms by hand: Chan's update of (mean, var, count) per step."""
    mean, var, count = 0.0, 1.0, 1e-4
    returns = np.zeros(rewards.shape[1])
    for step_rewards, step_terminals in zip(rewards, terminals, strict=True):
        returns = returns * discount + step_rewards
        n = len(returns)
        batch_mean, batch_var = returns.mean(), returns.var()
        delta = batch_mean - mean
        total = count + n
        mean += delta * n / total
        var = (var * count + batch_var * n + delta**2 * count * n / total) / total
        count = total
        returns[step_terminals > 0] = 0.0
    return var, returns


def test_running_return_variance_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    rewards = rng.normal(3.0, 2.0, size=(20, 3)).astype(np.float32)
    terminals = np.zeros((20, 3), dtype=np.int64)
    terminals[6, 0] = 1
    terminals[11, 2] = 2
    normalizer = RewardNormalizer(3, discount=0.9, clip=10.0)
    for step_rewards, step_terminals in zip(rewards, terminals, strict=True):
        normalizer.observe(np.arange(3), step_rewards, step_terminals)
    var, returns = _hand_statistics(rewards.astype(np.float64), terminals, 0.9)
    assert float(normalizer.return_stats.var) == pytest.approx(var, rel=1e-9)
    np.testing.assert_allclose(normalizer.returns.numpy(), returns, rtol=1e-9)
    raw = np.array([1.0, -50.0, 400.0], dtype=np.float32)
    expected = np.clip(raw / np.sqrt(var + 1e-8), -10, 10)
    np.testing.assert_allclose(normalizer(raw), expected, rtol=1e-6)
    assert normalizer(raw).dtype == np.float32
    tensor = normalizer(torch.as_tensor(raw))
    np.testing.assert_allclose(tensor.numpy(), expected, rtol=1e-6)


def test_running_returns_restart_where_episodes_end():
    normalizer = RewardNormalizer(2, discount=0.5)
    normalizer.observe(np.array([0, 1]), np.array([1.0, 2.0]), np.array([0, 0]))
    normalizer.observe(np.array([1]), np.array([4.0]), np.array([1]))  # slot 1 only, ends
    assert normalizer.returns.tolist() == [1.0, 0.0]
    normalizer.observe(np.array([0, 1]), np.array([1.0, 3.0]), np.array([2, 0]))
    assert normalizer.returns.tolist() == [0.0, 3.0]


def test_scale_and_clip_without_normalization_keep_no_statistics():
    normalizer = reward_normalizer(False, 0.1, 1.0, 0.99, 1)
    normalizer.observe(np.array([0]), np.array([5.0]), np.array([0]))
    np.testing.assert_allclose(normalizer(np.array([5.0, 30.0, -3.0])), [0.5, 1.0, -0.3])
    assert reward_normalizer(False, 1.0, None, 0.99, 1) is None  # nothing to do: no object
    agent = Agent.create("ppo", **DISCRETE, reward_scale=0.1)
    assert "reward_normalizer" not in agent.state_dict()


def test_a_clip_pair_bounds_each_side():  # Tensorforce's clipping: lower and upper apart
    normalizer = reward_normalizer(False, 1.0, [-1.0, 0.5], 0.99, 1)
    np.testing.assert_allclose(normalizer(np.array([-3.0, 0.2, 2.0])), [-1.0, 0.2, 0.5])
    clipped = normalizer(torch.tensor([-3.0, 2.0]))
    assert clipped.tolist() == [-1.0, 0.5]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"normalize_rewards": "yes"}, r"agent.normalize_rewards: 'yes' is invalid"),
        ({"reward_scale": 0}, r"agent.reward_scale: 0 is invalid; expected a number > 0"),
        ({"reward_clip": -1.0}, r"agent.reward_clip: -1.0 is invalid"),
        ({"reward_clip": (1.0, -1.0)}, r"agent.reward_clip: \(1.0, -1.0\) is invalid"),
    ],
)
def test_bad_reward_arguments_are_named(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        Agent.create("ppo", **DISCRETE, **kwargs)


def _run(agent: dict, steps: int) -> Runner:
    runner = Runner(agent=agent, environment=IdentityEnvironment, num_parallel=2, seed=0)
    runner.run(num_timesteps=steps, use_tqdm=False)
    return runner


@pytest.mark.parametrize("name", ["ppo", "a2c", "trpo", "dqn", "sac"])
@pytest.mark.parametrize("format", ["checkpoint", "numpy", "hdf5"])
def test_statistics_survive_save_and_load(tmp_path, name, format):
    env = CONTINUOUS if name == "sac" else DISCRETE
    agent = Agent.create(name, **env, device="cpu", seed=0, normalize_rewards=True, reward_clip=5.0)
    for step in range(30):
        agent.act(np.full(2, step / 30, dtype=np.float32))
        agent.observe(reward=float(step % 7) * 10, terminal=int(step % 10 == 9))
    path = agent.save(tmp_path, format=format)
    loaded = Agent.load(path)
    for key, value in agent.reward_normalizer.state_dict().items():
        assert torch.equal(loaded.reward_normalizer.state_dict()[key], value), key
    assert float(loaded.reward_normalizer.return_stats.var) > 1.0  # really restored, not reset
    assert loaded.reward_normalizer.clip == 5.0
    agent.close()
    loaded.close()


def test_ppo_learns_with_normalized_rewards_and_reports_raw_returns():
    agent = {
        "agent": "ppo",
        "seed": 0,
        "device": "cpu",
        "rollout_length": 32,
        "minibatch_size": 64,
        "epochs": 4,
        "learning_rate": 3e-3,
        "normalize_rewards": True,
        "reward_clip": 10.0,
    }
    runner = _run(agent, 4000)
    result = runner.evaluate(num_episodes=10)
    std = runner.agent.reward_normalizer.std()
    runner.close()
    assert std != 1.0  # the statistic moved
    assert max(runner.episode_returns) <= 8.0  # returns on the raw scale (8 is the best)
    assert result["return_mean"] >= 7.5


def test_dqn_learns_with_normalized_sampled_rewards():
    agent = {
        "agent": "dqn",
        "seed": 0,
        "device": "cpu",
        "network": {"type": "auto", "size": 64, "depth": 1, "activation": "relu"},
        "memory": 5000,
        "batch_size": 32,
        "learning_rate": 3e-3,
        "learning_starts": 200,
        "train_freq": 1,
        "target_update_interval": 50,
        "discount": 0.5,
        "exploration": {
            "type": "linear",
            "num_steps": 1500,
            "initial_value": 1.0,
            "final_value": 0.0,
        },
        "normalize_rewards": True,
        "reward_scale": 5.0,
    }
    runner = _run(agent, 3000)
    result = runner.evaluate(num_episodes=10)
    memory_rewards = runner.agent.memory.storage["rewards"][: len(runner.agent.memory)]
    runner.close()
    assert set(np.unique(memory_rewards)) <= {0.0, 1.0}  # the memory keeps raw rewards
    assert result["return_mean"] >= 7.5
