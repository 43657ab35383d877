"""Tensorforce's parameter types, ``agent.model``'s parameter values and per-agent regularizers.

Decays are checked against hand-computed values (Tensorforce's ``decay_steps = num_steps + 1``),
the random processes against their statistics, and the agents against what the parameters
and regularizers must change: acting, the n-step horizon of an update, the weights' size.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from forceexp import Agent
from forceexp.core.noise import GaussianNoise, make_noise
from forceexp.core.parameters import Decaying
from forceexp.core.schedules import Piecewise, Truncated, parse_schedule
from forceexp.errors import ConfigError

STATES = {"type": "float", "shape": (3,)}
INT_ACTION = {"type": "int", "num_values": 3}
FLOAT_ACTION = {"type": "float", "shape": (1,), "min_value": -1.0, "max_value": 1.0}
NETWORK = {"type": "auto", "size": 16, "depth": 1}


def _values(spec: dict, steps: list[int], integer: bool = False) -> list[float]:
    schedule = parse_schedule(spec, "p", integer=integer)
    return [schedule.value(step, 0, 0) for step in steps]


# ---------------------------------------------------------------------------- decays
D = {"num_steps": 9, "initial_value": 1.0}  # decay_steps 10


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"decay": "exponential", "decay_rate": 0.5}, {0: 1.0, 5: 0.5**0.5, 10: 0.5, 20: 0.25}),
        ({"decay": "exponential", "decay_rate": 0.5, "staircase": True}, {5: 1.0, 15: 0.5}),
        ({"decay": "inverse_time", "decay_rate": 0.5}, {5: 1 / 1.25, 10: 1 / 1.5, 20: 0.5}),
        ({"decay": "inverse_time", "decay_rate": 0.5, "staircase": True}, {9: 1.0, 15: 1 / 1.5}),
        ({"decay": "natural_exponential", "decay_rate": 0.5}, {10: math.exp(-0.5)}),
        ({"decay": "linear", "final_value": 0.0}, {0: 1.0, 5: 0.5, 10: 0.0, 30: 0.0}),
        (
            {"decay": "polynomial", "final_value": 0.1, "power": 2.0},
            {5: 0.9 * 0.25 + 0.1, 10: 0.1, 20: 0.1},
        ),
        (
            {"decay": "polynomial", "final_value": 0.1, "power": 2.0, "cycle": True},
            {15: 0.9 * 0.25**2 + 0.1, 20: 0.1},
        ),
        ({"decay": "cosine", "alpha": 0.1}, {0: 1.0, 5: 0.9 * 0.5 + 0.1, 10: 0.1, 50: 0.1}),
        ({"decay": "cosine_restarts", "t_mul": 2.0, "m_mul": 0.5}, {5: 0.5, 10: 0.5, 20: 0.25}),
        ({"decay": "linear_cosine"}, {0: 1.001, 5: 0.5 * 0.5 + 0.001, 10: 0.001}),
        (
            {"decay": "exponential", "decay_rate": 0.5, "increasing": True},
            {0: 0.0, 10: 0.5, 20: 0.75},
        ),
        ({"decay": "polynomial", "final_value": 0.5, "inverse": True, "scale": 3.0}, {10: 6.0}),
    ],
)
def test_decaying_matches_hand_computed_values(spec, expected):
    values = _values({"type": "decaying", **D, **spec}, list(expected))
    assert values == pytest.approx(list(expected.values()), rel=1e-5)


def test_decays_are_types_of_their_own_and_report_their_range():
    spec = {"type": "polynomial", **D, "final_value": 0.1, "power": 2.0}
    schedule = parse_schedule(spec, "p")
    assert schedule == parse_schedule({**spec, "type": "decaying", "decay": "polynomial"}, "p")
    assert isinstance(schedule, Decaying) and schedule.decay_steps == 10
    assert schedule.bounds() == (0.1, 1.0)
    exponential = {"type": "decaying", **D, "decay": "exponential", "decay_rate": 0.5}
    assert parse_schedule({**exponential, "increasing": True}, "p").bounds() == (0.0, 1.0)
    assert parse_schedule({**exponential, "scale": -2.0}, "p").bounds() == (-2.0, 0.0)


def test_piecewise_constant_is_the_piecewise_schedule():
    spec = {"type": "piecewise_constant", "boundaries": [1], "values": [0.1, 0.0]}
    assert parse_schedule(spec, "p") == Piecewise((1.0,), (0.1, 0.0))
    assert _values(spec, [0, 1, 2]) == [0.1, 0.1, 0.0]


def test_int_parameters_read_linear_as_tensorforce_and_truncate():
    linear = {"type": "linear", "num_steps": 1, "initial_value": 2, "final_value": 4}
    assert _values(linear, [0, 1, 2, 3], integer=True) == [2, 3, 4, 4]
    assert _values({**linear, "dtype": "int"}, [1]) == [3]
    assert _values(linear, [1]) == [4]  # a float parameter keeps our linear (final at num_steps)
    polynomial = {**linear, "type": "polynomial", "power": 2}  # 3.5 at step 1
    assert _values(polynomial, [1, 2], integer=True) == [3, 4]
    assert isinstance(parse_schedule(polynomial, "p", integer=True), Truncated)
    assert parse_schedule(polynomial, "p", integer=True).bounds() == (2, 4)


# ---------------------------------------------------------------------------- random processes
def test_ornstein_uhlenbeck_statistics():
    spec = {"type": "ornstein_uhlenbeck", "theta": 0.15, "sigma": 0.3, "mu": 0.5, "seed": 0}
    process = parse_schedule(spec, "p")
    x = np.array([process.value(t, 0, 0) for t in range(20_000)])
    assert x[0] == 0.5  # starts at mu
    stationary = 0.3 / math.sqrt(1 - 0.85**2)  # AR(1) with coefficient 1 - theta
    assert abs(x.mean() - 0.5) < 0.06
    assert x.std() == pytest.approx(stationary, rel=0.05)
    assert np.corrcoef(x[:-1], x[1:])[0, 1] == pytest.approx(0.85, abs=0.02)
    assert process.value(19_999, 0, 0) == process.value(5, 0, 0) == x[-1]  # no going back
    absolute = parse_schedule({**spec, "mu": 0.0, "absolute": True}, "p")
    assert min(absolute.value(t, 0, 0) for t in range(2000)) >= 0.0
    assert absolute.bounds() == (0.0, math.inf)
    assert repr(absolute).startswith("OrnsteinUhlenbeck(unit='timesteps', seed=0, theta=0.15")


def test_processes_draw_once_per_step_reproducibly():
    spec = {"type": "random", "distribution": "uniform", "minval": 0.2, "maxval": 0.4}
    first, second = parse_schedule(spec, "p"), parse_schedule(spec, "p")
    torch.manual_seed(7)
    a = [first.value(t, 0, 0) for t in range(3000)]
    torch.manual_seed(7)
    b = [second.value(t, 0, 0) for t in range(3000)]
    assert a == b  # seeded from torch's generator at the first read
    assert first.value(2999, 0, 0) == a[-1]  # the same value within a step
    assert min(a) >= 0.2 and max(a) < 0.4 and np.mean(a) == pytest.approx(0.3, abs=0.01)
    normal = parse_schedule(
        {"type": "random", "distribution": "normal", "mean": 1.0, "stddev": 2.0, "seed": 1}, "p"
    )
    draws = np.array([normal.value(t, 0, 0) for t in range(5000)])
    assert draws.mean() == pytest.approx(1.0, abs=0.15) and draws.std() == pytest.approx(2, 0.05)
    episodes = parse_schedule({**spec, "unit": "episodes", "seed": 3}, "p")
    assert episodes.value(100, 0, 0) == episodes.value(900, 0, 0) != episodes.value(0, 1, 0)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"type": "decaying", **D, "decay": "sine"}, r"p.decay: unknown decay 'sine'"),
        ({"type": "cosine", **D, "decay": "linear"}, r"p.decay: 'linear' is invalid; expected no"),
        (
            {"type": "decaying", **D, "decay": "exponential"},
            r"p: .* is invalid; expected a dict with 'decay_rate'",
        ),
        (
            {"type": "polynomial", **D, "final_value": 0, "power": -1},
            r"p.power: -1.0 is invalid; expected a number in \[0, inf\]",
        ),
        ({"type": "cosine", **D, "alpha": 2}, r"p.alpha: 2.0 is invalid; expected a number in"),
        ({"type": "cosine", **D, "final_value": 0}, r"p.final_value: 0 is invalid; expected no"),
        (
            {"type": "exponential", **D, "decay_rate": 0.5, "staircase": "yes", "dtype": "int"},
            r"p.staircase: 'yes' is invalid; expected True or False",
        ),
        (
            {"type": "inverse_time", **D, "decay_rate": 1, "initial_value": 2, "increasing": True},
            r"p.increasing: True is invalid; expected decayed values within \[0, 1\]",
        ),
        (
            {"type": "decaying", **D, "decay": "linear", "final_value": 0, "inverse": True},
            r"p.inverse: True is invalid; expected decayed values > 0",
        ),
        ({"type": "cosine", "initial_value": 1.0}, r"p.num_steps: None is invalid; expected an"),
        ({"type": "ornstein_uhlenbeck", "theta": 0}, r"p.theta: 0.0 is invalid; expected a numb"),
        ({"type": "ornstein_uhlenbeck", "sigma": -1}, r"p.sigma: -1.0 is invalid; expected a n"),
        ({"type": "ornstein_uhlenbeck", "absolute": 1}, r"p.absolute: 1 is invalid; expected T"),
        ({"type": "ornstein_uhlenbeck", "dt": 0.1}, r"p.dt: 0.1 is invalid; expected no such"),
        ({"type": "ornstein_uhlenbeck", "seed": -1}, r"p.seed: -1 is invalid; expected None or"),
        ({"type": "random"}, r"p.distribution: None is invalid; expected 'uniform' or 'normal'"),
        (
            {"type": "random", "distribution": "uniform", "mean": 0},
            r"p.mean: 0 is invalid; expected no such key; valid: distribution, maxval, minval",
        ),
        (
            {"type": "random", "distribution": "uniform", "minval": 1, "maxval": 1},
            r"p.maxval: 1.0 is invalid; expected a number > minval \(1.0\)",
        ),
        (
            {"type": "random", "distribution": "normal", "stddev": 0},
            r"p.stddev: 0.0 is invalid; expected a number > 0",
        ),
        ({"type": "constant", "value": 1, "dtype": "bool"}, r"p.dtype: 'bool' is invalid"),
    ],
)
def test_parameter_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_schedule(spec, "p")


# ---------------------------------------------------------------------------- agents
def _run(agent: Agent, steps: int, seed: int = 0, episode: int = 5) -> None:
    rng = np.random.default_rng(seed)
    for t in range(steps):
        agent.act(states=rng.normal(size=3).astype(np.float32))
        agent.observe(reward=float(rng.normal()), terminal=(t + 1) % episode == 0)


def _agent(name: str, actions: dict = INT_ACTION, **kwargs) -> Agent:
    base = {"states": STATES, "actions": actions, "max_episode_timesteps": 5, "device": "cpu"}
    return Agent.create(agent=name, **{**base, "seed": 0, "network": NETWORK, **kwargs})


def test_agent_model_exposes_current_parameter_values():
    exploration = {"type": "decaying", "decay": "exponential", "unit": "timesteps"}
    exploration.update(num_steps=5, initial_value=0.1, decay_rate=0.5)
    horizon = {"type": "linear", "unit": "timesteps", "num_steps": 1, "initial_value": 2}
    agent = _agent("a2c", exploration=exploration, horizon={**horizon, "final_value": 4})
    model = agent.model
    assert model.exploration.value().dtype == torch.float32
    assert model.exploration.value().item() == pytest.approx(0.1)
    _run(agent, 1)
    assert model.exploration.value().item() == pytest.approx(0.1 * 0.5 ** (1 / 6))
    assert model.reward_horizon.value().item() == 3 == agent.horizon
    assert model.reward_horizon.value().dtype == torch.int64
    assert model.policy is agent.policy and model.get_architecture() == agent.get_architecture()
    with pytest.raises(AttributeError, match=r"agent\.model is read-only"):
        model.exploration = 0.5
    dqn = _agent("dqn", exploration=0.2, learning_rate=1e-3)
    assert dqn.model.exploration.value().item() == pytest.approx(0.2)
    assert dqn.model.learning_rate.value().item() == pytest.approx(1e-3)
    with pytest.raises(AttributeError, match="reward_horizon"):
        dqn.model.reward_horizon  # noqa: B018
    ddpg = _agent("ddpg", FLOAT_ACTION, exploration={"type": "linear", **D, "final_value": 0.0})
    _run(ddpg, 5)
    assert ddpg.model.exploration.value().item() == pytest.approx(1.0 - 5 / 9)


def test_a_process_is_clipped_into_a_bounded_argument():
    agent = _agent("ppo", exploration={"type": "random", "distribution": "normal", "seed": 0})
    seen = []
    for _ in range(20):
        _run(agent, 1)
        seen.append(agent.model.exploration.value().item())
    assert min(seen) == 0.0 and 0.0 < max(seen) <= 1.0  # N(0, 1) clipped into [0, 1]
    decaying = {"type": "decaying", "decay": "linear", **D, "final_value": 2.0}
    with pytest.raises(ConfigError, match=r"agent.exploration: .* values in \[0.0, 1.0\]"):
        _agent("ppo", exploration=decaying)


def test_the_horizon_current_at_an_update_is_the_one_used():
    def after_update(horizon):
        agent = _agent("a2c", horizon=horizon, rollout_length=5)
        _run(agent, 5)
        return torch.cat([p.detach().flatten() for p in agent.policy.parameters()])

    switch = {"type": "piecewise_constant", "boundaries": [4], "values": [2, 3], "dtype": "int"}
    assert torch.equal(after_update(switch), after_update(3))  # 3 from timestep 5 on
    assert not torch.equal(after_update(switch), after_update(2))
    episodes = {"type": "linear", "unit": "episodes", "num_steps": 2, "initial_value": 2}
    agent = _agent("a2c", horizon={**episodes, "final_value": 4})
    assert agent.horizon == 2
    _run(agent, 10, episode=5)  # two episodes: 2 + 2 * 2 / 3 -> 3
    assert agent.horizon == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"horizon": {"type": "random", "distribution": "normal"}},
            r"agent.horizon: .* expected an int >= 1 \(or an int parameter dict",
        ),
        ({"horizon": 2.5}, r"agent.horizon: 2.5 is invalid; expected an int >= 1"),
        ({"variable_noise": -0.1}, r"agent.variable_noise: -0.1 is invalid; expected a number >="),
        ({"l2_regularization": "x"}, r"agent.l2_regularization: 'x' is invalid; expected a numb"),
    ],
)
def test_horizon_and_regularizer_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _agent("a2c", **kwargs)


def test_a_replay_agent_refuses_a_horizon_schedule_by_name():
    spec = {"type": "linear", "num_steps": 2, "initial_value": 1, "final_value": 3}
    with pytest.raises(ConfigError, match=r"agent.horizon: .* an int >= 1 for dqn \(the replay"):
        _agent("dqn", horizon=spec)


def test_exploration_follows_a_decaying_schedule_between_acts():
    spec = {"type": "decaying", "decay": "exponential", "num_steps": 3, "initial_value": 0.8}
    agent = _agent("dqn", exploration={**spec, "decay_rate": 0.1}, learning_starts=0)
    epsilons = []
    for _ in range(3):
        epsilons.append(agent._epsilon())
        _run(agent, 1)
    assert epsilons == pytest.approx([0.8, 0.8 * 0.1**0.25, 0.8 * 0.1**0.5])


def _acted(agent: Agent, deterministic: bool) -> set:
    state = np.ones(3, np.float32)
    return {
        np.asarray(agent.act(states=state, independent=True, deterministic=deterministic)).item()
        for _ in range(30)
    }


@pytest.mark.parametrize(
    ("name", "actions", "kwargs"),
    [
        ("dqn", INT_ACTION, {"exploration": 0.0}),
        ("ddpg", FLOAT_ACTION, {"exploration": None}),
        ("trpo", INT_ACTION, {}),
    ],
)
def test_variable_noise_changes_acting_and_is_removed_after(name, actions, kwargs):
    plain = _agent(name, actions, **kwargs)
    noisy = _agent(name, actions, variable_noise=2.0, **kwargs)
    before = [p.clone() for p in _params(noisy)]
    if name != "trpo":
        assert len(_acted(plain, False)) == 1  # no exploration: the same action every time
    assert len(_acted(noisy, False)) > 1
    assert all(torch.equal(p, q) for p, q in zip(_params(noisy), before, strict=True))
    assert len(_acted(noisy, True)) == 1  # no noise when deterministic


def _params(agent: Agent) -> list[torch.Tensor]:
    modules = agent.acting_modules() if hasattr(agent, "acting_modules") else [agent.policy]
    return [p for module in modules for p in module.parameters()]


@pytest.mark.parametrize(
    ("name", "actions", "kwargs"),
    [
        ("dqn", INT_ACTION, {"learning_starts": 10, "batch_size": 8}),
        ("ddpg", FLOAT_ACTION, {"learning_starts": 10, "batch_size": 8}),
        ("sac", FLOAT_ACTION, {"learning_starts": 10, "batch_size": 8}),
        ("trpo", INT_ACTION, {"rollout_length": 10}),
    ],
)
def test_l2_regularization_shrinks_the_acting_weights(name, actions, kwargs):
    plain = _agent(name, actions, **kwargs)
    penalized = _agent(name, actions, l2_regularization=5.0, **kwargs)
    if name != "trpo":
        weights = [w for w in _params(penalized) if w.dim() == 2]
        expected = 2.5 * sum(float(w.detach().pow(2).sum()) for w in weights)
        assert float(penalized.l2_term().detach()) == pytest.approx(expected, rel=1e-5)
        assert penalized._fast is None  # the penalty is on the autograd path
    _run(plain, 40)
    _run(penalized, 40)

    def size(agent: Agent) -> float:
        return sum(float(w.detach().pow(2).sum()) for w in _params(agent) if w.dim() == 2)

    assert size(penalized) < size(plain)


def test_tracking_reports_the_parameters_of_each_act_under_tensorforce_names():
    exploration = {"type": "exponential", "num_steps": 5, "initial_value": 0.1, "decay_rate": 0.5}
    horizon = {"type": "linear", "unit": "episodes", "num_steps": 2, "initial_value": 2}
    agent = _agent(
        "a2c", exploration=exploration, horizon={**horizon, "final_value": 4}, tracking="all"
    )
    _run(agent, 7, episode=3)  # values after the 7th act: 7 timesteps, 2 episodes
    tracked = agent.tracked_tensors()
    assert tracked["agent/exploration/exploration"] == pytest.approx(0.1 * 0.5 ** (7 / 5))
    assert tracked["agent/reward_horizon/reward_horizon"] == 3  # 2 + 2 * 2 / 3, truncated
    lr = agent.model.learning_rate.value().item()
    name = "agent/policy_optimizer/policy_optimizer/learning_rate/learning_rate"
    assert tracked[name] == pytest.approx(lr)


def test_a_schedule_dict_is_a_continuous_agents_exploration_std():
    spec = {"type": "exponential", "num_steps": 10, "initial_value": 0.5, "decay_rate": 0.5}
    noise = make_noise(spec, (1,), 1, "agent.exploration", seed=0)
    assert isinstance(noise, GaussianNoise) and noise.current_scale(10) == pytest.approx(0.25)
    process = {"type": "ornstein_uhlenbeck", "theta": 0.5}  # a noise type: OU action noise
    with pytest.raises(ConfigError, match=r"agent.exploration: .* a dict with 'sigma'"):
        make_noise(process, (1,), 1, "agent.exploration")
    agent = _agent("sac", FLOAT_ACTION, exploration={**spec, "initial_value": 0.3})
    assert agent.model.exploration.value().item() == pytest.approx(0.3)


def test_a_seeded_agent_draws_the_same_process_values():
    def exploration_values() -> list[float]:
        agent = _agent("ppo", exploration={"type": "ornstein_uhlenbeck", "absolute": True})
        values = []
        for _ in range(5):
            _run(agent, 1)
            values.append(agent.model.exploration.value().item())
        return values

    first = exploration_values()
    assert first == exploration_values() and len(set(first)) == 5
