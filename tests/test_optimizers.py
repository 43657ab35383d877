"""Tensorforce's optimizers (``forceexp.core.optimizers``) and the generic agent's use of them."""

import numpy as np
import pytest
import torch
from torch import nn

from forceexp import Agent, tags
from forceexp.core.optimizer_specs import build_optimizer, is_default
from forceexp.core.optimizers import TORCH_OPTIMIZERS, Synchronization
from forceexp.errors import ConfigError

TARGET = torch.tensor([1.0, -2.0, 0.5])


def _quadratic(size: int = 8):
    """A parameter and ``loss(rows)``: mean over rows of ``|w - target|^2`` (rows are copies)."""
    weight = nn.Parameter(torch.zeros(3))
    calls: list[int] = []

    def loss(rows):
        count = size if rows is None else len(rows)
        calls.append(count)
        return (weight - TARGET).pow(2).sum() * torch.ones(count).mean()

    return weight, loss, calls


def _distance(weight: nn.Parameter) -> float:
    return float((weight.detach() - TARGET).pow(2).sum())


@pytest.mark.parametrize("name", sorted(TORCH_OPTIMIZERS))
def test_each_torch_optimizer_lowers_a_quadratic(name):
    weight, loss, _ = _quadratic()
    optimizer = build_optimizer({"type": name, "learning_rate": 0.05}, [weight])
    start = _distance(weight)
    for _ in range(20):
        deltas = optimizer.step(loss, 8)
    assert _distance(weight) < start
    assert deltas[0].shape == weight.shape


def test_evolutionary_lowers_a_quadratic_without_gradients():
    torch.manual_seed(0)
    weight, loss, _ = _quadratic()
    optimizer = build_optimizer(
        dict(type="evolutionary", learning_rate=0.1, num_samples=5), [weight]
    )
    for _ in range(50):
        optimizer.step(loss, 8)
    assert _distance(weight) < 0.5 * _distance(torch.zeros(3))
    assert weight.grad is None


def test_line_search_shrinks_an_overshooting_step():
    weight, loss, _ = _quadratic()
    # SGD at 0.9 jumps to w = 1.8 * target (distance 0.64 |t|^2); 0.75 of it lands nearer
    plain = build_optimizer(dict(type="sgd", learning_rate=0.9), [nn.Parameter(torch.zeros(3))])
    searched = build_optimizer(
        dict(type="sgd", learning_rate=0.9, linesearch_iterations=3), [weight]
    )
    deltas = searched.step(loss, 8)
    full = plain.torch_steps[0].params[0]
    plain.step(lambda rows: (full - TARGET).pow(2).sum(), 8)
    assert _distance(weight) < _distance(full)
    assert torch.allclose(deltas[0], weight.detach())  # the returned update is the one applied
    assert torch.allclose(deltas[0], 1.8 * 0.75**2 * TARGET)  # two shrinks improve, a third not


def test_doublecheck_reverts_a_step_that_raises_the_loss():
    weight, loss, _ = _quadratic()
    optimizer = build_optimizer(
        dict(type="sgd", learning_rate=5.0, doublecheck_update=True), [weight]
    )
    deltas = optimizer.step(loss, 8)  # w = 10 * target: the loss rises 81-fold
    assert torch.equal(weight.detach(), torch.zeros(3)) and not deltas[0].any()
    good = build_optimizer(dict(type="sgd", learning_rate=0.1, doublecheck_update=True), [weight])
    assert good.step(loss, 8)[0].any() and _distance(weight) < _distance(torch.zeros(3))


@pytest.mark.parametrize(("fraction", "rows"), [(2, 2), (0.5, 5), (0.01, 1), (1.0, 10), (20, 10)])
def test_subsampling_steps_on_the_given_number_of_rows(fraction, rows):
    weight, loss, calls = _quadratic(size=10)
    optimizer = build_optimizer(dict(type="sgd", subsampling_fraction=fraction), [weight])
    optimizer.step(loss, 10)
    assert calls == [rows]


def test_clipping_multi_step_and_plus_combine_updates():
    weight, loss, _ = _quadratic()
    clipped = build_optimizer(dict(type="sgd", learning_rate=0.5, clipping_threshold=0.1), [weight])
    deltas = clipped.step(loss, 8)
    assert np.isclose(float(deltas[0].norm()), 0.1) and torch.allclose(weight.detach(), deltas[0])
    by_value = dict(type="clipping_step", optimizer="sgd", threshold=0.05, mode="value")
    assert float(build_optimizer(by_value, [weight]).step(loss, 8)[0].abs().max()) <= 0.05
    weight, loss, _ = _quadratic()
    repeated = build_optimizer(dict(type="sgd", learning_rate=0.1, multi_step=3), [weight])
    assert torch.allclose(repeated.step(loss, 8)[0], (1 - 0.8**3) * TARGET)
    weight, loss, _ = _quadratic()
    two = [{"type": "sgd", "learning_rate": 0.1}, {"type": "sgd", "learning_rate": 0.1}]
    plus = build_optimizer(dict(type="plus", optimizer1=two[0], optimizer2=two[1]), [weight])
    assert torch.allclose(plus.step(loss, 8)[0], (0.2 + 0.8 * 0.2) * TARGET)
    assert torch.allclose(weight.detach(), 0.36 * TARGET)


def test_explicit_modifier_types_equal_the_wrapper_keys():
    weight, loss, _ = _quadratic()
    inner = dict(type="sgd", learning_rate=0.9)
    spec = dict(type="linesearch_step", optimizer=inner, max_iterations=3, backtracking_factor=0.5)
    deltas = build_optimizer(spec, [weight]).step(loss, 8)
    assert torch.allclose(deltas[0], 1.8 * 0.5 * TARGET)  # one halving lands on 0.9 * target
    weight, loss, calls = _quadratic(size=10)
    spec = dict(
        type="multi_step",
        num_steps=2,
        optimizer=dict(type="subsampling_step", optimizer="sgd", fraction=3),
    )
    build_optimizer(spec, [weight]).step(loss, 10)
    assert calls == [3, 3]


def test_optimizer_specs_without_a_counterpart_are_named():
    weight = [nn.Parameter(torch.zeros(3))]
    cases = [
        ("adamm", r"agent.optimizer.type: unknown optimizer 'adamm'; did you mean 'adam'"),
        ("natural_gradient", r"natural_gradient' is invalid.*trpo agent's update"),
        (dict(type="synchronization", update_weight=1.0), r"baseline optimizer"),
        (dict(type="adam", subsampling_fraction=1.5), r"subsampling_fraction: 1.5 is invalid"),
        (dict(type="adam", multi_step=0), r"agent.optimizer.multi_step: 0 is invalid"),
        (dict(type="evolutionary"), r"agent.optimizer: learning_rate= is required"),
        (dict(type="plus", optimizer1="adam", optimizer2="sgd", x=1), r"unsupported keys \['x'\]"),
        (dict(type="adam", betas=3), r"agent.optimizer: adam options \['betas'\]"),
    ]
    for spec, match in cases:
        with pytest.raises(ConfigError, match=match):
            build_optimizer(spec, weight)
    assert is_default(dict(optimizer="adam", learning_rate=1e-3)) and not is_default("sgd")


def test_synchronization_moves_the_baseline_toward_the_policy_by_its_weight():
    policy, baseline = nn.Linear(2, 2), nn.Linear(2, 2)
    gap = [
        (p - b).detach() for p, b in zip(policy.parameters(), baseline.parameters(), strict=True)
    ]
    sync = Synchronization(policy, baseline, update_weight=0.5, sync_frequency=2)
    assert [sync() for _ in range(4)] == [True, False, True, False]
    for p, b, g in zip(policy.parameters(), baseline.parameters(), gap, strict=True):
        assert torch.allclose(p - b, 0.25 * g, atol=1e-6)  # halved twice
    with pytest.raises(ConfigError, match=r"parameter shapes"):
        Synchronization(policy, nn.Linear(2, 3), 1.0)
    with pytest.raises(ConfigError, match=r"update_weight: 0.0 is invalid"):
        Synchronization(policy, baseline, 0.0)


# ---------------------------------------------------------------- the generic agent, upstream specs
STATES = {"type": "float", "shape": (3,)}
ACTIONS = dict(
    bool_action=dict(type="bool", shape=(1,)),
    int_action=dict(type="int", shape=(2,), num_values=3),
    gaussian_action=dict(type="float", shape=(1,), min_value=-2.0, max_value=1.0),
)
BASE = dict(
    agent="tensorforce",
    states=STATES,
    actions=ACTIONS,
    max_episode_timesteps=5,
    policy=dict(network=dict(type="auto", size=8, depth=1, rnn=2)),
    baseline=dict(network=dict(type="auto", size=8, depth=1, rnn=1)),
    update=4,
    objective="policy_gradient",
    reward_estimation=dict(horizon=3, estimate_advantage=True),
    seed=0,
)
UPSTREAM = {
    "evolutionary": dict(optimizer=dict(type="evolutionary", learning_rate=1e-3, num_samples=5)),
    "wrapper": dict(
        optimizer=dict(
            optimizer="adam",
            learning_rate=1e-1,
            clipping_threshold=1e-2,
            multi_step=5,
            subsampling_fraction=0.5,
            linesearch_iterations=3,
            doublecheck_update=True,
        )
    ),
    "rows": dict(optimizer=dict(optimizer="adam", subsampling_fraction=2)),
    "plus": dict(
        optimizer=dict(
            type="plus",
            optimizer1=dict(type="adam", learning_rate=1e-3),
            optimizer2=dict(type="adagrad", learning_rate=1e-3),
        )
    ),
    "synchronization": dict(
        baseline_optimizer=dict(type="synchronization", update_weight=1.0, sync_frequency=2),
        baseline_objective="policy_gradient",
    ),
    "plus objective": dict(
        objective=dict(type="plus", objective1="policy_gradient", objective2="action_value")
    ),
}


@pytest.mark.parametrize("case", list(UPSTREAM))
def test_generic_agent_runs_each_upstream_optimizer_spec(case):
    agent = Agent.create(**{**BASE, **UPSTREAM[case]})
    assert agent.name == "a2c" and agent._fused is None  # the autograd path
    before = [p.detach().clone() for p in agent.policy.parameters()]
    rng = np.random.default_rng(0)
    for t in range(13):  # three updates of 4 timesteps (each waits for its bootstrap act)
        agent.act(rng.normal(size=3).astype(np.float32))
        agent.observe(reward=float(rng.normal()), terminal=(t + 1) % 5 == 0)
    assert agent.updates == 3
    moved = [not torch.equal(b, p) for b, p in zip(before, agent.policy.parameters(), strict=True)]
    assert any(moved)
    if case == "synchronization":  # synced at updates 1 and 3: the baseline is the policy
        network, baseline = agent.policy.network, agent.policy.baseline
        assert all(
            torch.equal(p, b)
            for p, b in zip(network.parameters(), baseline.parameters(), strict=True)
        )
    if case == "plus objective":
        assert agent.action_value_loss


def test_plus_objective_adds_the_action_value_loss_to_the_policy_gradient():
    agent = Agent.create(
        **{**BASE, "policy": "auto", "baseline": "auto", **UPSTREAM["plus objective"]}
    )
    log_prob, advantages = torch.tensor([-1.0, -2.0]), torch.tensor([0.5, -0.5])
    evaluated = (log_prob, torch.zeros(2), torch.zeros(2))
    stored = (log_prob, advantages, torch.zeros(2), torch.zeros(2))
    with_value, _ = agent._loss(evaluated, stored, float("inf"))
    agent.action_value_loss = False
    plain, _ = agent._loss(evaluated, stored, float("inf"))
    assert torch.isclose(with_value - plain, 0.5 * (log_prob - advantages).pow(2).mean())
    with pytest.raises(ConfigError, match=r"expected plus of objective1='policy_gradient'"):
        Agent.create(**{**BASE, "objective": dict(type="plus", objective1="action_value")})


# ---------------------------------------------------------------- natural_gradient (trpo)
def _trpo(**kwargs) -> Agent:
    spec = dict(
        agent="tensorforce",
        states=STATES,
        actions={**ACTIONS, "beta_action": dict(type="float", min_value=1.0, max_value=2.0)},
        max_episode_timesteps=5,
        policy=dict(network="auto", distributions=dict(beta_action="beta")),
        update=4,
        objective="policy_gradient",
        optimizer=dict(type="natural_gradient", learning_rate=1e-2, only_positive_updates=False),
        reward_estimation=dict(
            reward_processing=dict(type="clipping", lower=-1.0, upper=1.0),
            return_processing=dict(type="clipping", lower=-0.5, upper=0.5),
        ),
        entropy_regularization=0.01,
        seed=0,
    )
    return Agent.create(**{**spec, **kwargs})


def test_natural_gradient_options_reach_trpo_with_every_head():
    agent = _trpo(optimizer=dict(type="natural_gradient", learning_rate=1e-2, cg_max_iterations=4))
    assert agent.name == "trpo" and agent.cg_max_steps == 4 and agent.only_positive_updates
    agent = _trpo()
    assert not agent.only_positive_updates and agent.entropy_coef == 0.01
    assert agent.return_clipping == (-0.5, 0.5)
    rng = np.random.default_rng(0)
    episode = {"states": [], "actions": [], "reward": [], "terminal": []}
    for t in range(9):
        states = rng.normal(size=3).astype(np.float32)
        actions = agent.act(states)
        agent.observe(reward=float(rng.normal()), terminal=(t + 1) % 5 == 0)
        for key, value in zip(episode, (states, actions, 1.0, (t + 1) % 5 == 0), strict=True):
            episode[key].append(value)
    assert agent.updates == 2
    before = [p.detach().clone() for p in agent.policy.parameters()]
    agent.experience(**{key: values[:5] for key, values in episode.items()})
    metrics = agent.update()  # TRPO learns from given episodes too
    assert np.isfinite(metrics[tags.LOSS_VALUE]) and agent.updates == 3
    after = list(agent.policy.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))


def test_natural_gradient_kl_covers_bernoulli_and_beta():
    from forceexp.core.distributions import Bernoulli, Beta
    from forceexp.core.natural_gradient import kl_divergence

    logits = torch.tensor([[0.3, -1.0]])
    assert torch.allclose(kl_divergence(Bernoulli(logits, 1), Bernoulli(logits, 1)), torch.zeros(1))
    p, q = torch.sigmoid(torch.tensor(0.3)), torch.sigmoid(torch.tensor(-0.2))
    expected = p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))
    got = kl_divergence(Bernoulli(torch.tensor([0.3]), 0), Bernoulli(torch.tensor([-0.2]), 0))
    assert torch.allclose(got, expected[None])
    a, b = torch.tensor([[2.0]]), torch.tensor([[3.0]])
    assert float(kl_divergence(Beta(a, b, 1), Beta(b, a, 1))) > 0.0


def test_a_baseline_sync_countdown_survives_save_and_load(tmp_path):
    sync = dict(update_weight=0.5, sync_frequency=3)
    agent = Agent.create(
        "a2c", states=STATES, actions=dict(type="int", num_values=2), baseline_sync=sync
    )
    _run_steps(agent, 11)  # two updates of 5 steps: synced at the first, next in one update
    assert agent.updates == 2 and agent.baseline_sync.countdown == 2
    for format in ("checkpoint", "numpy"):
        agent.save(tmp_path / format, format=format)
        assert Agent.load(tmp_path / format, format=format).baseline_sync.countdown == 2


def test_an_optimizer_spec_and_its_state_survive_save_and_load(tmp_path):
    spec = dict(type="plus", optimizer1=dict(type="adam", learning_rate=1e-3), optimizer2="adagrad")
    agent = Agent.create(
        "a2c",
        states=STATES,
        actions=dict(type="int", num_values=2),
        optimizer=spec,
        rollout_length=4,
    )
    _run_steps(agent, 9)
    agent.save(tmp_path)
    loaded = Agent.load(tmp_path)
    assert loaded.spec["optimizer"] == spec
    for mine, theirs in zip(agent.optimizer.torch_steps, loaded.optimizer.torch_steps, strict=True):
        state, restored = (
            mine.optimizer.state_dict()["state"],
            theirs.optimizer.state_dict()["state"],
        )
        assert state.keys() == restored.keys()
        assert all(torch.equal(state[0][k], restored[0][k]) for k in state[0])


def test_ppo_keeps_adam_fast_and_runs_other_optimizer_specs_on_autograd(caplog):
    base = dict(states=STATES, actions=dict(type="int", num_values=2), seed=0)
    adam = dict(optimizer="adam", learning_rate=3e-4, multi_step=4, subsampling_fraction=0.5)
    agent = Agent.create("ppo", **base, rollout_length=8, optimizer=adam)
    assert agent._fused is not None and isinstance(agent.optimizer, torch.optim.Adam)
    assert (agent.spec["epochs"], agent.spec["minibatch_size"]) == (4, 4)
    spec = dict(optimizer="sgd", learning_rate=0.01, multi_step=3, doublecheck_update=True)
    with caplog.at_level("INFO", logger="forceexp.agents.agent"):
        agent = Agent.create("ppo", **base, rollout_length=8, optimizer=spec)
    assert "ppo update: autograd path (no fast path: optimizer {'optimizer': 'sgd'" in caplog.text
    assert agent._fused is None and agent.spec["epochs"] == 3  # multi_step stays PPO's epochs
    assert agent.spec["optimizer"] == dict(
        optimizer="sgd", learning_rate=0.01, doublecheck_update=True
    )
    _run_steps(agent, 9)
    assert agent.updates == 1
    plus = dict(type="plus", objective1=dict(type="policy_gradient", clipping_value=0.2))
    plus["objective2"] = "action_value"
    agent = Agent.create(**{**BASE, "objective": plus, "reward_estimation": {}})
    assert agent.name == "ppo" and agent.action_value_loss and agent._fused is None


def _run_steps(agent: Agent, steps: int) -> None:
    for t in range(steps):
        agent.act(np.zeros(3, np.float32))
        agent.observe(reward=1.0, terminal=t % 4 == 3)
