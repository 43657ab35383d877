"""gSDE exploration: log-prob by hand, held noise, resampling cadence, learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from forceexp import Agent, Runner
from forceexp.core.distributions import StateDependentHead
from forceexp.environments.testing import TargetEnvironment
from forceexp.errors import ConfigError
from forceexp.specs import parse_specs


def _head(full_std: bool = True) -> StateDependentHead:
    spec = parse_specs({"type": "float", "shape": (2,)}, "action").items[0][1]
    torch.manual_seed(0)
    return StateDependentHead(3, spec, slots=2, log_std_init=-1.0, full_std=full_std)


@pytest.mark.parametrize("full_std", [True, False])
def test_log_prob_and_entropy_match_a_hand_computation(full_std):
    head = _head(full_std)
    with torch.no_grad():
        head.log_std.copy_(torch.linspace(-1.0, 0.5, head.log_std.numel()).view_as(head.log_std))
    features = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.3, -0.2]])
    dist = head(features)
    actions = torch.tensor([[0.1, -0.4], [1.0, 0.2]])
    weights_std = np.broadcast_to(np.exp(head.log_std.detach().numpy()), (3, 2))
    linear = head.linear
    mean = features.numpy() @ linear.weight.detach().numpy().T + linear.bias.detach().numpy()
    std = np.sqrt(features.numpy() ** 2 @ weights_std**2 + 1e-6)
    z = (actions.numpy() - mean) / std
    log_prob = (-0.5 * z**2 - np.log(std) - 0.5 * math.log(2 * math.pi)).sum(1)
    np.testing.assert_allclose(dist.log_prob(actions).detach().numpy(), log_prob, rtol=1e-5)
    entropy = (np.log(std) + 0.5 + 0.5 * math.log(2 * math.pi)).sum(1)
    np.testing.assert_allclose(dist.entropy().detach().numpy(), entropy, rtol=1e-5)


def test_noise_is_held_per_slot_until_resampled():
    head = _head()
    features = torch.tensor([[0.5, -1.0, 2.0], [0.5, -1.0, 2.0]])
    head.rows = torch.tensor([0, 1])
    first = head(features).sample(False)
    expected = head(features).mean + features @ head.matrices[0]
    torch.testing.assert_close(first[0], expected[0])
    assert not torch.equal(first[0], first[1])  # same state, other slot: other noise
    torch.testing.assert_close(head(features).sample(False), first)  # held
    head.resample(torch.tensor([1]))
    again = head(features).sample(False)
    torch.testing.assert_close(again[0], first[0])
    assert not torch.equal(again[1], first[1])


def _agent(**sde):
    return Agent.create(
        "ppo",
        states={"type": "float", "shape": (3,)},
        actions={"type": "float", "shape": (1,)},
        parallel_interactions=2,
        rollout_length=8,
        minibatch_size=16,
        epochs=1,
        device="cpu",
        seed=0,
        sde=sde,
    )


def test_matrices_are_drawn_at_rollout_starts_and_every_sample_freq_steps():
    agent = _agent(sample_freq=3)
    assert agent._fused is None  # gSDE heads take the autograd path
    head = agent.policy.sde_heads()[0]
    drawn = []  # per act: which slots got new matrices
    for _ in range(16):  # two rollouts of 8 steps per slot
        before = head.matrices.clone()
        agent.act(np.zeros((2, 3), np.float32))
        drawn.append([not torch.equal(before[i], head.matrices[i]) for i in range(2)])
        agent.observe(reward=[0.0, 0.0], terminal=[0, 0])
    steps_with_draws = [t for t, d in enumerate(drawn) if all(d)]
    assert steps_with_draws == [0, 3, 6, 8, 11, 14]  # every 3 steps, again at the 2nd rollout
    assert not any(any(d) for t, d in enumerate(drawn) if t not in steps_with_draws)
    agent.close()


def test_bad_sde_options_are_named():
    with pytest.raises(ConfigError, match=r"agent.sde.sample_freq: 0 is invalid"):
        _agent(sample_freq=0)
    with pytest.raises(ConfigError, match=r"agent.sde: \{'freq': 2\} is invalid"):
        _agent(freq=2)
    with pytest.raises(ConfigError, match=r"agent.sde: \{\} is invalid; expected null: no action"):
        Agent.create(
            "ppo",
            states={"type": "float", "shape": (3,)},
            actions={"type": "int", "num_values": 2},
            sde={},
        )
    with pytest.raises(ConfigError, match=r"agent.sde: .* bounded_actions='beta'"):
        Agent.create(
            "ppo",
            states={"type": "float", "shape": (3,)},
            actions={"type": "float", "shape": (1,), "min_value": -1.0, "max_value": 1.0},
            bounded_actions="beta",
            sde={},
        )


@pytest.mark.slow
def test_ppo_with_gsde_learns_a_continuous_target():
    agent = {
        "agent": "ppo",
        "seed": 0,
        "device": "cpu",
        "rollout_length": 64,
        "minibatch_size": 64,
        "epochs": 10,
        "learning_rate": 3e-3,
        "discount": 0.0,
        "gae_lambda": 0.0,
        "sde": {"sample_freq": 4, "log_std_init": -1.0},
    }
    runner = Runner(agent=agent, environment=TargetEnvironment, num_parallel=4, seed=0)
    runner.run(num_timesteps=8000, use_tqdm=False)
    result = runner.evaluate(num_episodes=10)
    runner.close()
    assert np.mean(runner.episode_returns[:20]) < -3.0  # random play: about -5.3 per episode
    assert result["return_mean"] > -1.0
