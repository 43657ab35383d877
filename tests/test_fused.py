"""The hand-derived PPO step (forceexp.core.fused) against the autograd step it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forceexp import Agent
from forceexp.core.buffers import Batch
from forceexp.core.dense import TORCH_MATMUL_MIN_ROWS
from forceexp.core.fused import unsupported_reason

ROWS = 64

CASES = {
    "categorical_tanh_separate_baseline": dict(
        states=dict(type="float", shape=(4,)),
        actions=dict(type="int", num_values=2),
    ),
    "masked_multi_categorical_relu_shared_entropy": dict(
        states=dict(type="float", shape=(5,)),
        actions=dict(type="int", shape=(3,), num_values=4),
        network=dict(type="auto", size=32, depth=2, activation="relu"),
        baseline=None,
        entropy_coef=0.05,
    ),
    "gaussian_two_states_value_clip_entropy": dict(
        states=dict(a=dict(type="float", shape=(3,)), b=dict(type="float", shape=(4,))),
        actions=dict(type="float", shape=(2,), min_value=-1.0, max_value=1.0),
        value_clip=0.1,
        entropy_coef=0.01,
    ),
    "gaussian_scalar_no_clipping_no_normalization": dict(
        states=dict(type="float", shape=(3,)),
        actions=dict(type="float"),
        network=dict(type="auto", size=16, depth=1),
        max_grad_norm=None,
        normalize_advantages=False,
    ),
    "categorical_l2_regularization": dict(
        states=dict(type="float", shape=(4,)),
        actions=dict(type="int", num_values=3),
        l2_regularization=0.05,
    ),
}


def _agent(config: dict, fast: bool) -> Agent:
    return Agent.create(agent="ppo", seed=3, device="cpu", fast_update=fast, **config)


def _batch(agent: Agent, rng: np.random.Generator, rows: int = ROWS) -> Batch:
    """Random rows with old log-probs near the current ones (so some ratios get clipped)."""
    policy = agent.policy
    states = {
        name: torch.as_tensor(rng.standard_normal((rows, *spec.shape)), dtype=torch.float32)
        for name, spec in policy.state_specs.items
    }
    masks, actions = {}, {}
    for name, spec in policy.action_specs.items:
        if spec.type == "int":
            mask = torch.as_tensor(rng.random((rows, *spec.shape, spec.num_values)) < 0.7)
            mask[..., 0] = True
            masks[name] = mask
            logits = torch.where(mask, 0.0, float("-inf"))
            actions[name] = torch.distributions.Categorical(logits=logits).sample()
        else:
            actions[name] = torch.as_tensor(rng.normal(0, 1.2, (rows, *spec.shape))).float()
    with torch.no_grad():
        log_prob, _, value = policy.evaluate(states, actions, masks)
    noise = lambda scale: torch.as_tensor(rng.normal(0, scale, rows)).float()  # noqa: E731
    return Batch(
        states,
        masks,
        actions,
        log_prob + noise(0.2),
        value + noise(0.1),
        noise(1.0),
        value + noise(1.0),
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_steps_match_autograd(case: str) -> None:
    """Parameters, optimizer moments and metrics agree after several steps on both paths."""
    fast, slow = _agent(CASES[case], True), _agent(CASES[case], False)
    assert fast._fused is not None and slow._fused is None
    for p, q in zip(fast.policy.parameters(), slow.policy.parameters(), strict=True):
        assert torch.equal(p, q)
    rng = np.random.default_rng(0)
    for _ in range(4):
        batch = _batch(slow, rng)
        clip = 0.1
        expected = slow._minibatch_step(batch, None, clip)
        got = fast._fused_minibatch_step(fast._fused_rows(batch), None, clip)
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(fast.policy.named_parameters(), slow.policy.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=f"parameter {name}")
        fast_state, slow_state = fast.optimizer.state[p], slow.optimizer.state[q]
        assert float(fast_state["step"]) == float(slow_state["step"]) == 4
        torch.testing.assert_close(fast_state["exp_avg"], slow_state["exp_avg"])


def test_fused_rows_match_minibatch_indexing() -> None:
    """A shuffled minibatch on the fast path is the same rows as on the autograd path."""
    config = CASES["categorical_tanh_separate_baseline"]
    fast, slow = _agent(config, True), _agent(config, False)
    batch = _batch(slow, np.random.default_rng(1))
    idx = torch.randperm(ROWS)[:20]
    expected = slow._minibatch_step(batch, idx, 0.2)
    got = fast._fused_minibatch_step(fast._fused_rows(batch), idx, 0.2)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (
            dict(actions=dict(type="float", min_value=0.0, max_value=1.0), bounded_actions="beta"),
            "BetaHead",
        ),
        (
            dict(actions=dict(a=dict(type="int", num_values=2), b=dict(type="int", num_values=3))),
            "more than one action",
        ),
        (dict(network=[dict(type="dense", size=8)]), "not the auto MLP"),
        (dict(network=dict(type="auto", activation="elu")), "tanh/relu"),
        (dict(states=dict(type="float", shape=(8, 8, 3))), "image"),
        (dict(states=dict(type="int", num_values=5)), "int states"),
    ],
)
def test_unsupported_networks_use_autograd(config: dict, reason: str) -> None:
    full = dict(states=dict(type="float", shape=(4,)), actions=dict(type="int", num_values=2))
    full.update(config)
    agent = _agent(full, True)
    assert agent._fused is None
    assert reason in unsupported_reason(agent.policy)


def test_fast_update_learns_and_checkpoints_interchange(tmp_path) -> None:
    """A fast-path agent's checkpoint (optimizer state included) loads into an autograd agent."""
    config = CASES["categorical_tanh_separate_baseline"]
    fast = _agent(config, True)
    batch = _batch(fast, np.random.default_rng(2))
    fast._update_batch(batch)
    fast.save(str(tmp_path), format="checkpoint")
    slow = Agent.load(tmp_path, fast_update=False)
    assert slow._fused is None
    for p, q in zip(fast.policy.parameters(), slow.policy.parameters(), strict=True):
        assert torch.equal(p, q)
        assert torch.equal(fast.optimizer.state[p]["exp_avg"], slow.optimizer.state[q]["exp_avg"])
    slow._update_batch(batch)  # the loaded optimizer state works on the autograd path


def test_fast_steps_and_optimizer_step_count_each_step_once() -> None:
    """Fast steps and a plain ``optimizer.step()`` (imitation pretraining) share Adam's state."""
    agent = _agent(CASES["categorical_tanh_separate_baseline"], True)
    rows = agent._fused_rows(_batch(agent, np.random.default_rng(3)))
    for _ in range(3):
        agent._fused_minibatch_step(rows, None, 0.2)
    sum(p.square().sum() for p in agent.policy.parameters()).backward()
    agent.optimizer.step()
    agent._fused_minibatch_step(rows, None, 0.2)
    for p in agent.policy.parameters():
        assert float(agent.optimizer.state[p]["step"]) == 5


@pytest.mark.parametrize("rows", [ROWS, TORCH_MATMUL_MIN_ROWS + 136])  # NumPy / torch products
@pytest.mark.parametrize("case", sorted(CASES))
def test_numpy_actor_matches_the_torch_policy(case: str, rows: int) -> None:
    """Sampled actions get the torch policy's log-prob and value; deterministic acts agree."""
    agent = _agent(CASES[case], True)
    actor, policy = agent._actor, agent.policy
    assert actor is not None
    batch = _batch(agent, np.random.default_rng(4), rows)
    x = agent._fused_rows(batch).states
    name = actor.name
    mask = batch.masks.get(name)
    np.random.seed(0)
    raw, log_prob, value = actor.act(x, None if mask is None else mask.numpy(), False, True)
    if mask is not None:  # sampled values are always allowed ones
        allowed = np.take_along_axis(mask.numpy(), raw[..., None], -1)
        assert allowed.all()
    actions = {name: torch.as_tensor(raw)}
    with torch.no_grad():
        expected_log_prob, _, expected_value = policy.evaluate(batch.states, actions, batch.masks)
        deterministic, _, _ = policy.act(batch.states, batch.masks, deterministic=True)
    np.testing.assert_allclose(log_prob, expected_log_prob.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, expected_value.numpy(), rtol=1e-5, atol=1e-5)
    greedy, _, _ = actor.act(x, None if mask is None else mask.numpy(), True, False)
    np.testing.assert_allclose(greedy, deterministic[name].numpy(), rtol=1e-5, atol=1e-6)


def test_numpy_actor_samples_follow_the_probabilities() -> None:
    agent = _agent(
        dict(states=dict(type="float", shape=(2,)), actions=dict(type="int", num_values=3)), True
    )
    head = agent.policy.heads["action"].linear
    with torch.no_grad():  # fixed logits (0, 1, 2) whatever the state
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
    np.random.seed(1)
    raw, log_prob, _ = agent._actor.act(np.zeros((20000, 2), np.float32), None, False, True)
    probs = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0).numpy()
    np.testing.assert_allclose(np.bincount(raw, minlength=3) / len(raw), probs, atol=0.015)
    np.testing.assert_allclose(np.exp(log_prob), probs[raw], rtol=1e-5)


def test_acting_is_reproducible_under_a_seed() -> None:
    def actions() -> np.ndarray:
        agent = _agent(CASES["categorical_tanh_separate_baseline"], True)
        states = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
        return np.stack([agent.act(s, independent=True) for s in states])

    assert np.array_equal(actions(), actions())
