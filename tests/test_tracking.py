"""Tensorforce's ``tracking='all'``: the names of its generic agent, with the real values."""

import math

import numpy as np
import pytest
import torch

from forceexp import Agent

STATES = {"type": "float", "shape": (3,)}
ACTIONS = {
    "flag": {"type": "bool", "shape": (1,)},
    "pick": {"type": "int", "shape": (2,), "num_values": 3},
    "move": {"type": "float", "shape": (2,), "min_value": -1.0, "max_value": 1.0},
    "gain": {"type": "float", "shape": (), "min_value": 0.0, "max_value": 2.0},
}
EXPECTED = {
    "agent/policy/flag_distribution/probability",
    "agent/policy/pick_distribution/probabilities",
    "agent/policy/pick_distribution/temperature",
    "agent/policy/move_distribution/mean",
    "agent/policy/move_distribution/stddev",
    "agent/policy/gain_distribution/alpha",
    "agent/policy/gain_distribution/beta",
    "agent/entropy",
    *(f"agent/entropies/{a}" for a in ACTIONS),
    "agent/kl-divergence",
    *(f"agent/kl-divergences/{a}" for a in ACTIONS),
    *(
        f"agent/{p}-{k}loss"
        for p in ("policy", "baseline")
        for k in ("", "objective-", "regularization-")
    ),
    "agent/policy_optimizer/policy_optimizer/learning_rate/learning_rate",
    "agent/exploration/exploration",
    "agent/reward_horizon/reward_horizon",
    "agent/preprocessed-reward",
    "agent/preprocessed-episode-return",
    "agent/update-return",
    "agent/update-processed-return",
    "agent/update-advantage",
    "agent/update-processed-advantage",
}


def _agent(**kwargs) -> Agent:
    spec = dict(
        policy=dict(
            network=dict(type="auto", size=8, depth=1, rnn=False),
            distributions=dict(
                pick=dict(type="categorical", temperature_mode="global"), gain="beta"
            ),
        ),
        update=4,
        optimizer=dict(optimizer="adam", learning_rate=1e-2),
        objective="policy_gradient",
        reward_estimation=dict(
            horizon=2,
            estimate_advantage=True,
            reward_processing=dict(type="clipping", lower=-0.5, upper=0.5),
            return_processing=dict(type="clipping", lower=-0.6, upper=0.6),
            advantage_processing="batch_normalization",
        ),
        baseline=dict(network=dict(type="auto", size=6, depth=1, rnn=False)),
        baseline_objective="state_value",
        l2_regularization=0.01,
        entropy_regularization=0.01,
        exploration=0.01,
    )
    return Agent.create(
        agent={**spec, **kwargs}, states=STATES, actions=ACTIONS, max_episode_timesteps=5, seed=0
    )


def _step(agent: Agent, rng: np.random.Generator, terminal: bool) -> bool:
    agent.act(states=rng.normal(size=3).astype(np.float32))
    return agent.observe(reward=float(rng.normal()), terminal=terminal)


def test_all_names_from_the_first_act_and_no_others():
    agent = _agent(tracking="all")
    rng = np.random.default_rng(0)
    assert agent.tracked_tensors() == {}
    updates = 0
    for t in range(12):
        updates += _step(agent, rng, terminal=t % 5 == 4)
        assert set(agent.tracked_tensors()) == EXPECTED
    assert updates == 2  # each after the bootstrap value of the next act


def test_values_are_those_of_the_distributions_losses_and_targets():
    agent = _agent(tracking="all")
    rng = np.random.default_rng(1)
    for t in range(8):
        _step(agent, rng, terminal=t == 4)
    v = agent.tracked_tensors()
    probs = v["agent/policy/pick_distribution/probabilities"]
    assert probs.shape == (1, 2, 3) and np.allclose(probs.sum(-1), 1.0, atol=1e-6)
    p = v["agent/policy/flag_distribution/probability"]
    bernoulli = -(p * np.log(p) + (1 - p) * np.log(1 - p)).sum()
    assert v["agent/entropies/flag"] == pytest.approx(bernoulli, rel=1e-5)
    assert v["agent/entropies/pick"] == pytest.approx(-(probs * np.log(probs)).sum(), rel=1e-5)
    std = v["agent/policy/move_distribution/stddev"]
    gaussian = (np.log(std) + 0.5 + 0.5 * math.log(2 * math.pi)).sum()
    assert v["agent/entropies/move"] == pytest.approx(gaussian, rel=1e-5)
    alpha, beta = (
        v["agent/policy/gain_distribution/alpha"],
        v["agent/policy/gain_distribution/beta"],
    )
    entropy = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(beta)).entropy()
    assert v["agent/entropies/gain"] == pytest.approx(float(entropy.sum()), rel=1e-5)
    total = sum(v[f"agent/entropies/{a}"] for a in ACTIONS)
    assert v["agent/entropy"] == pytest.approx(total)
    for part in ("policy", "baseline"):
        pieces = v[f"agent/{part}-objective-loss"] + v[f"agent/{part}-regularization-loss"]
        assert v[f"agent/{part}-loss"] == pytest.approx(pieces)
    assert v["agent/baseline-regularization-loss"] > 0  # l2 of the baseline network's weights
    kls = [v[f"agent/kl-divergences/{a}"] for a in ACTIONS]
    assert v["agent/kl-divergence"] == pytest.approx(sum(kls)) and v["agent/kl-divergence"] > 0
    returns, processed = v["agent/update-return"], v["agent/update-processed-return"]
    assert len(returns) == 4 and np.allclose(processed, np.clip(returns, -0.6, 0.6))
    advantages = v["agent/update-processed-advantage"]
    assert abs(advantages.mean()) < 1e-5 and advantages.std(ddof=1) == pytest.approx(1, abs=1e-3)
    assert abs(v["agent/preprocessed-reward"][0]) <= 0.5


def test_a_list_of_names_and_no_tracking_cost():
    agent = _agent(tracking=["agent/entropies/pick", "losses/clipfrac"])
    rng = np.random.default_rng(2)
    updates = sum(_step(agent, rng, terminal=False) for _ in range(6))
    assert updates == 1
    assert set(agent.tracked_tensors()) == {"agent/entropies/pick", "losses/clipfrac"}
    plain = _agent()
    assert plain.tracked_tensors() == {} and not plain.policy.keep_distributions
    assert not plain.keep_targets
