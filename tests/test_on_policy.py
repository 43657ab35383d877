"""A2C, VPG, AC and TRPO: learning toy envs, fast path vs autograd, TRPO's maths, masks, saving."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from forceexp import Agent, Runner
from forceexp.agents.ppo_update import fresh
from forceexp.core.buffers import Batch
from forceexp.core.distributions import MASKED_LOGIT, Categorical, Gaussian
from forceexp.core.natural_gradient import conjugate_gradient, kl_divergence
from forceexp.environments.testing import IdentityEnvironment, MaskedChoiceEnvironment
from forceexp.errors import ConfigError

AGENTS = ("a2c", "vpg", "ac", "trpo")
#: small, quick settings per agent for the toy environments
TOY = {
    "a2c": {"rollout_length": 8, "learning_rate": 3e-3},
    "vpg": {"rollout_length": 32, "learning_rate": 3e-3},
    "ac": {"rollout_length": 8, "learning_rate": 3e-3},
    "trpo": {"rollout_length": 64, "max_kl": 0.05, "minibatch_size": 64},
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _run(agent: str, env, timesteps: int, **kwargs) -> tuple[Runner, dict]:
    spec = {"agent": agent, "seed": 0, "device": "cpu", **TOY[agent], **kwargs}
    runner = Runner(agent=spec, environment=env, num_parallel=4, seed=0)
    runner.run(num_timesteps=timesteps, use_tqdm=False)
    result = runner.evaluate(num_episodes=10)
    return runner, result


@pytest.mark.parametrize("agent", AGENTS)
def test_learns_identity_in_seconds(agent):
    runner, result = _run(agent, IdentityEnvironment, 6000)
    runner.close()
    assert np.mean(runner.episode_returns[:20]) < 4.0  # random play scores about 2 of 8
    assert result["return_mean"] >= 7.5


@pytest.mark.parametrize("agent", AGENTS)
def test_masked_actions_are_never_chosen(agent):
    env = partial(MaskedChoiceEnvironment, num_values=6, num_valid=2, episode_length=5, seed=1)
    runner, result = _run(agent, env, 1000)
    runner.close()
    assert min(runner.episode_returns) > 0  # an invalid move would earn -1 and end the episode
    assert result["return_mean"] > 0


def _agent(name: str, fast: bool, **kwargs) -> Agent:
    return Agent.create(
        agent=name,
        states=dict(type="float", shape=(5,)),
        actions=dict(type="int", shape=(2,), num_values=4),
        seed=3,
        device="cpu",
        fast_update=fast,
        **kwargs,
    )


def _batch(agent: Agent, rows: int = 48) -> Batch:
    """Rows acted by the agent's own policy (ratio 1, as in a real A2C update), masks included."""
    rng = np.random.default_rng(0)
    states = {"state": torch.as_tensor(rng.standard_normal((rows, 5)), dtype=torch.float32)}
    masks = {"action": torch.as_tensor(rng.random((rows, 2, 4)) < 0.6)}
    masks["action"][..., 1] = True
    with torch.no_grad():
        actions, log_prob, value = agent.policy.act(states, masks, deterministic=False)
    advantages = torch.as_tensor(rng.standard_normal(rows), dtype=torch.float32)
    return Batch(states, masks, actions, log_prob, value, advantages, value + advantages)


@pytest.mark.parametrize(
    "config",
    [
        {},  # RMSprop, no advantage normalization, gradient clipping
        {"optimizer": "adam", "normalize_advantages": True, "entropy_coef": 0.01},
        {"baseline": None, "max_grad_norm": None, "entropy_coef": 0.02},
    ],
)
def test_a2c_fast_step_matches_autograd(config):
    """Parameters, optimizer state and metrics agree after several updates on both paths."""
    fast, slow = _agent("a2c", True, **config), _agent("a2c", False, **config)
    assert fast._fused is not None and slow._fused is None
    for _ in range(3):
        batch = _batch(slow)
        expected = slow._update_batch(Batch(*(fresh(x) for x in batch)))
        got = fast._update_batch(batch)
        for key, value in expected.items():
            np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=1e-5, err_msg=key)
    for (name, p), q in zip(fast.policy.named_parameters(), slow.policy.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=f"parameter {name}")
        fast_state, slow_state = fast.optimizer.state[p], slow.optimizer.state[q]
        assert float(fast_state["step"]) == float(slow_state["step"]) == 3
        key = "exp_avg_sq" if config.get("optimizer") == "adam" else "square_avg"
        torch.testing.assert_close(fast_state[key], slow_state[key], rtol=1e-4, atol=1e-7)


def test_a2c_gradient_is_the_policy_gradient():
    """The unclipped surrogate's gradient is -mean(A grad log pi): Adam's first moment shows it."""
    agent = _agent("a2c", False, optimizer="adam", value_coef=0.0, max_grad_norm=None)
    batch = _batch(agent)
    log_prob, _, _ = agent.policy.evaluate(batch.states, batch.actions, batch.masks)
    (-(batch.advantages * log_prob).mean()).backward()
    expected = [p.grad.clone() for p in agent.policy.network.parameters()]
    agent.optimizer.zero_grad()
    agent._minibatch_step(Batch(*(fresh(x) for x in batch)), None, float("inf"))
    state = agent.optimizer.state  # after one step Adam's first moment is (1 - beta1) * grad
    for p, g in zip(agent.policy.network.parameters(), expected, strict=True):
        torch.testing.assert_close(state[p]["exp_avg"], 0.1 * g, rtol=1e-4, atol=1e-7)


def test_conjugate_gradient_solves_an_spd_system():
    rng = np.random.default_rng(0)
    m = torch.as_tensor(rng.standard_normal((6, 6)))
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.as_tensor(rng.standard_normal(6))
    x = conjugate_gradient(lambda v: a @ v, b, max_steps=20)
    torch.testing.assert_close(a @ x, b, rtol=1e-8, atol=1e-8)


def test_kl_divergence_matches_torch_distributions():
    torch.manual_seed(0)
    old_logits, new_logits = torch.randn(4, 3), torch.randn(4, 3)
    mask = torch.tensor([[True, True, False]] * 4)  # the third action masked out
    masked = (
        torch.where(mask, old_logits, MASKED_LOGIT),
        torch.where(mask, new_logits, MASKED_LOGIT),
    )
    got = kl_divergence(Categorical(masked[0], 0), Categorical(masked[1], 0))
    p = torch.distributions.Categorical(logits=old_logits[:, :2])
    q = torch.distributions.Categorical(logits=new_logits[:, :2])
    torch.testing.assert_close(got, torch.distributions.kl_divergence(p, q))
    mean, log_std = torch.randn(4, 2), torch.randn(2)
    mean2, log_std2 = torch.randn(4, 2), torch.randn(2)
    got = kl_divergence(Gaussian(mean, log_std, 1), Gaussian(mean2, log_std2, 1))
    p = torch.distributions.Normal(mean, log_std.exp())
    q = torch.distributions.Normal(mean2, log_std2.exp())
    torch.testing.assert_close(got, torch.distributions.kl_divergence(p, q).sum(1))


def test_trpo_fast_value_fit_matches_autograd():
    """The value fit on the dense stacks gives autograd's parameters, Adam state and loss."""
    fast, slow = (
        Agent.create(
            "trpo",
            states=dict(type="float", shape=(5,)),
            actions=dict(type="int", shape=(2,), num_values=4),
            minibatch_size=16,
            value_epochs=3,
            seed=3,
            device="cpu",
            fast_update=flag,
        )
        for flag in (True, False)
    )
    assert fast._fast_value is not None and slow._fast_value is None
    batch = _batch(slow)
    losses = []
    for agent in (fast, slow):
        torch.manual_seed(0)  # the same shuffles
        losses.append(agent._fit_value(Batch(*(fresh(x) for x in batch))))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for (name, p), q in zip(fast.policy.named_parameters(), slow.policy.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=f"parameter {name}")
    for p, q in zip(
        fast.optimizer.param_groups[0]["params"],
        slow.optimizer.param_groups[0]["params"],
        strict=True,
    ):
        assert float(fast.optimizer.state[p]["step"]) == float(slow.optimizer.state[q]["step"]) == 9
        torch.testing.assert_close(
            fast.optimizer.state[p]["exp_avg"], slow.optimizer.state[q]["exp_avg"]
        )


@pytest.mark.parametrize("max_kl", [0.001, 0.01])
def test_trpo_step_respects_max_kl_on_a_real_batch(max_kl):
    """After an update on a CartPole rollout the policy moved, by a mean KL <= 1.5 * max_kl."""
    agent = Agent.create(
        "trpo",
        environment="CartPole-v1",
        rollout_length=256,
        max_kl=max_kl,
        seed=0,
        device="cpu",
        parallel_interactions=2,
    )
    runner = Runner(agent=agent, environment="CartPole-v1", num_parallel=2, seed=0)
    states = torch.as_tensor(np.random.default_rng(0).normal(0, 0.5, (512, 4)), dtype=torch.float32)
    with torch.no_grad():
        before = agent.policy.distributions(agent.policy.network({"state": states}), {})
    runner.run(num_timesteps=512, use_tqdm=False)
    runner.close()
    assert agent.updates == 1
    with torch.no_grad():
        after = agent.policy.distributions(agent.policy.network({"state": states}), {})
    kl = float(kl_divergence(before["action"], after["action"]).mean())
    assert 0 < kl <= 1.5 * max_kl


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize("fmt", ["checkpoint", "numpy", "hdf5"])
def test_save_load_round_trip(tmp_path: Path, agent, fmt):
    spec = {"agent": agent, "seed": 0, "device": "cpu", "normalize_states": True, **TOY[agent]}
    runner = Runner(agent=spec, environment="CartPole-v1", num_parallel=2, seed=0)
    runner.run(num_timesteps=256, use_tqdm=False)
    trained = runner.agent
    assert trained.updates >= 1
    path = Path(trained.save(tmp_path, format=fmt))
    loaded = Agent.load(tmp_path, filename=path.name)
    runner.close()
    assert loaded.name == agent and loaded.spec == trained.spec
    for (name, p), q in zip(
        trained.state_dict()["policy"].items(), loaded.policy.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    states = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
    acts = [int(trained.act(s, independent=True, deterministic=True)) for s in states]
    assert acts == [int(loaded.act(s, independent=True, deterministic=True)) for s in states]


def test_agents_are_registered_with_their_defaults():
    a2c, vpg, ac = (_agent(name, True) for name in ("a2c", "vpg", "ac"))
    assert isinstance(a2c.optimizer, torch.optim.RMSprop) and a2c.gae_lambda == 1.0
    assert a2c.rollout_length == 5
    assert isinstance(vpg.optimizer, torch.optim.Adam) and vpg.gae_lambda == 1.0
    assert isinstance(ac.optimizer, torch.optim.Adam) and ac.gae_lambda == 0.0
    assert vpg.spec["agent"] == "vpg" and vpg.spec["rollout_length"] == 256


def test_vpg_without_baseline_uses_the_returns_as_advantages():
    """``subtract_baseline=False``: one update's advantages are the rollout's returns."""
    agent = _agent("vpg", False, subtract_baseline=False, rollout_length=4)
    seen = []
    agent._update_batch = lambda batch: seen.append(batch) or {}
    states = np.ones((1, 5), dtype=np.float32)  # a nonzero value estimate
    for _ in range(4):
        agent.act(states)
        agent.observe(reward=1.0, terminal=False)
    agent.act(states)  # the bootstrap value arrives with the next act
    (batch,) = seen
    torch.testing.assert_close(batch.advantages, batch.returns)
    assert bool((batch.value != 0).all())  # so with a baseline they would differ


def test_tensorforce_aliases():
    common = dict(states=dict(type="float", shape=(3,)), actions=dict(type="int", num_values=2))
    ac = Agent.create(
        "ac",
        **common,
        batch_size=12,
        parallel_interactions=4,
        horizon=1,
        critic_optimizer=0.25,
        entropy_regularization=0.01,
        device="cpu",
    )
    assert (ac.rollout_length, ac.gae_lambda, ac.value_coef) == (3, 0.0, 0.25)
    assert ac.entropy_coef == 0.01
    trpo = Agent.create(
        "trpo",
        **common,
        max_episode_timesteps=100,
        batch_size=2,
        learning_rate=5e-3,
        linesearch_iterations=5,
        device="cpu",
        baseline_optimizer=dict(optimizer="adam", learning_rate=3e-3, multi_step=7),
    )
    assert (trpo.rollout_length, trpo.max_kl, trpo.line_search_max_iter) == (200, 5e-3, 5)
    assert (trpo.optimizer.param_groups[0]["lr"], trpo.value_epochs) == (3e-3, 7)
    with pytest.raises(ConfigError, match=r"agent.horizon: 0 is invalid; expected an int >= 1"):
        Agent.create("a2c", **common, horizon=0)
    with pytest.raises(ConfigError, match=r"agent.subsampling_fraction: 0.5 is invalid"):
        Agent.create("trpo", **common, subsampling_fraction=0.5)


@pytest.mark.parametrize(
    ("agent", "kwargs", "match"),
    [
        ("a2c", {"optimizer": "sgdd"}, r"agent.optimizer.type: unknown optimizer 'sgdd'"),
        ("a2c", {"rollout_length": 0}, r"agent.rollout_length: 0 is invalid; expected an int"),
        ("trpo", {"baseline": None}, r"agent.baseline: None is invalid; expected a value network"),
        ("trpo", {"max_kl": 0.0}, r"agent.max_kl: 0.0 is invalid"),
        ("trpo", {"cg_max_steps": 0}, r"agent.cg_max_steps: 0 is invalid"),
        ("trpo", {"line_search_shrinking_factor": 1.0}, r"line_search_shrinking_factor: 1.0"),
        ("vpg", {"gae_lambda": 2.0}, r"agent.gae_lambda: 2.0 is invalid"),
    ],
)
def test_bad_arguments_are_refused(agent, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Agent.create(
            agent,
            states=dict(type="float", shape=(3,)),
            actions=dict(type="int", num_values=2),
            device="cpu",
            **kwargs,
        )
