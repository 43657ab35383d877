"""Tensorforce's generic ``agent='tensorforce'``: component specs mapped onto our agents."""

from __future__ import annotations

import pytest
import torch

from forceexp import Agent
from forceexp.errors import ConfigError

ENV = "CartPole-v1"
CRITIC = dict(type="parametrized_state_value", network="auto")


def create(**kwargs) -> Agent:
    return Agent.create(agent="tensorforce", environment=ENV, device="cpu", **kwargs)


def test_clipped_policy_gradient_is_ppo():
    """Tensorforce's own ppo.py components: clipping_value, Adam with multi_step, subsampling."""
    agent = create(
        update=dict(unit="episodes", batch_size=4),
        optimizer=dict(
            optimizer="adam", learning_rate=3e-3, multi_step=5, subsampling_fraction=0.25
        ),
        objective=dict(type="policy_gradient", importance_sampling=True, clipping_value=0.1),
        reward_estimation=dict(horizon="episode", discount=0.97, estimate_advantage=True),
        policy=dict(type="parametrized_distributions", network="auto", temperature=1.0),
        baseline=CRITIC,
        baseline_objective=dict(type="state_value"),
    )
    assert agent.name == "ppo" and agent.spec["agent"] == "ppo"
    assert (agent.rollout_length, agent.epochs, agent.minibatch_size) == (2000, 5, 500)
    assert agent.discount == 0.97 and agent.schedules["clip_ratio"].constant == 0.1


def test_natural_gradient_is_trpo():
    agent = create(
        update=dict(unit="episodes", batch_size=2),
        optimizer=dict(
            optimizer="natural_gradient",
            learning_rate=0.02,
            only_positive_updates=True,
            linesearch_iterations=7,
        ),
        objective=dict(type="policy_gradient", importance_sampling=True),
        reward_estimation=dict(horizon="episode", discount=0.99, estimate_advantage=True),
        baseline=CRITIC,
        baseline_optimizer=dict(optimizer="adam", learning_rate=3e-3, multi_step=10),
    )
    assert agent.name == "trpo"
    assert (agent.rollout_length, agent.max_kl, agent.line_search_max_iter) == (1000, 0.02, 7)
    assert (agent.optimizer.param_groups[0]["lr"], agent.value_epochs) == (3e-3, 10)


@pytest.mark.parametrize(
    ("estimation", "name", "gae_lambda"),
    [
        (dict(horizon="episode", discount=0.99), "vpg", 1.0),
        (dict(horizon=1, discount=0.99, estimate_advantage=True), "a2c", 0.0),
        (dict(horizon=1, discount=0.99, estimate_advantage=False), "ac", 0.0),
    ],
)
def test_plain_policy_gradient_by_reward_estimation(estimation, name, gae_lambda):
    agent = create(
        update=dict(unit="timesteps", batch_size=10),
        optimizer=dict(type="adam", learning_rate=2e-3),
        objective="policy_gradient",
        reward_estimation=estimation,
        baseline=CRITIC,
        baseline_optimizer=0.5 if name != "vpg" else None,
    )
    assert agent.name == name and agent.gae_lambda == gae_lambda
    assert agent.rollout_length == 10 and agent.optimizer.param_groups[0]["lr"] == 2e-3
    assert isinstance(agent.optimizer, torch.optim.Adam)  # Tensorforce's optimizer
    if name != "vpg":
        assert agent.value_coef == 0.5  # critic_optimizer given as a float: the loss weight


def test_action_value_is_dqn_with_its_target_sync():
    agent = create(
        memory=10_000,
        update=dict(unit="timesteps", batch_size=32, frequency=0.25, start=100),
        optimizer=dict(type="adam", learning_rate=1e-3),
        objective=dict(type="action_value", huber_loss=None),
        reward_estimation=dict(horizon=1, discount=0.99, predict_horizon_values="late"),
        policy=dict(type="parametrized_value_policy", network="auto", state_value_mode="implicit"),
        baseline_optimizer=dict(type="synchronization", update_weight=1.0, sync_frequency=4),
    )
    assert agent.name == "dqn"
    spec = agent.spec
    assert (spec["batch_size"], spec["train_freq"], spec["learning_starts"]) == (32, 8, 100)
    assert (spec["target_update_interval"], spec["loss"]) == (32, "mse")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, r"objective= is required"),
        (
            {"objective": "plus"},
            r"agent.objective: 'plus' is invalid; expected plus of objective1='policy_gradient'",
        ),
        (
            {"objective": "policy_gradient", "reward_estimation": {"foo": 1}},
            r"agent.reward_estimation: unsupported keys \['foo'\]",
        ),
        ({"objective": "policy_gradient", "reward_estimation": 3}, r"reward_estimation: 3"),
        (
            {"objective": "policy_gradient", "baseline_objective": "plus"},
            r"agent.baseline_objective: 'plus' is invalid",
        ),
        (
            {"objective": "policy_gradient", "policy": {"type": "parametrized_x", "foo": 1}},
            r"agent.policy: unsupported keys \['foo'\]",
        ),
        (
            {"objective": "action_value", "update": dict(unit="episodes", batch_size=2)},
            r"agent.update.unit: 'episodes' is invalid; expected 'timesteps' for dqn",
        ),
        (
            {
                "objective": "policy_gradient",
                "optimizer": dict(optimizer="natural_gradient", cg_steps=3),
            },
            r"unsupported natural_gradient keys \['cg_steps'\]",
        ),
    ],
)
def test_components_that_do_not_map_are_named(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create(**kwargs)
