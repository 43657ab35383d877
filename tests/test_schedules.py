"""Parameter schedules: values at hand-checked points, every spec error, and PPO using them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forceexp import Agent, tags
from forceexp.core.schedules import (
    Constant,
    Exponential,
    Linear,
    Piecewise,
    check_schedule,
    named_schedule,
    parse_schedule,
)
from forceexp.errors import ConfigError
from forceexp.observers.base import Observer


def test_a_number_is_a_constant():
    schedule = parse_schedule(0.5, "p")
    assert schedule == Constant(0.5)
    assert schedule.value(10**6, 10, 3) == 0.5
    assert parse_schedule({"type": "constant", "value": 2}, "p").value(0, 0, 0) == 2.0
    assert parse_schedule(schedule, "p") is schedule


def test_linear():
    spec = {"type": "linear", "num_steps": 100, "initial_value": 1.0, "final_value": 0.1}
    schedule = parse_schedule(spec, "p")
    assert schedule == Linear(1.0, 0.1, 100)
    points = {0: 1.0, 50: 0.55, 100: 0.1, 200: 0.1}
    for step, expected in points.items():
        assert schedule.value(step, 0, 0) == pytest.approx(expected)


def test_linear_fraction_of_the_horizon_is_sb3_exploration_fraction():
    # SB3 DQN: exploration_fraction=0.1, exploration_initial_eps=1.0, exploration_final_eps=0.05
    spec = {"type": "linear", "fraction": 0.1, "initial_value": 1.0, "final_value": 0.05}
    schedule = parse_schedule(spec, "p", horizon=1000)
    assert schedule.num_steps == 100
    assert schedule.value(50, 0, 0) == pytest.approx(0.525)
    assert schedule.value(100, 0, 0) == pytest.approx(0.05)
    assert schedule.value(999, 0, 0) == pytest.approx(0.05)


def test_exponential():
    spec = {"type": "exponential", "num_steps": 10000, "initial_value": 1e-3, "decay_rate": 0.5}
    schedule = parse_schedule(spec, "p")
    assert schedule == Exponential(1e-3, 0.5, 10000)
    points = {0: 1e-3, 5000: 1e-3 * math.sqrt(0.5), 10000: 5e-4, 20000: 2.5e-4}
    for step, expected in points.items():
        assert schedule.value(step, 0, 0) == pytest.approx(expected)
    floored = parse_schedule({**spec, "final_value": 3e-4}, "p")
    assert floored.value(10000, 0, 0) == pytest.approx(5e-4)
    assert floored.value(20000, 0, 0) == pytest.approx(3e-4)


def test_piecewise_follows_tensorforce_boundaries():
    spec = {"type": "piecewise", "boundaries": [10, 20], "values": [1.0, 0.5, 0.1]}
    schedule = parse_schedule(spec, "p")
    assert schedule == Piecewise((10.0, 20.0), (1.0, 0.5, 0.1))
    points = {0: 1.0, 10: 1.0, 11: 0.5, 20: 0.5, 21: 0.1, 10**9: 0.1}
    assert {step: schedule.value(step, 0, 0) for step in points} == points


@pytest.mark.parametrize(
    ("unit", "counters"), [("episodes", (999, 5, 0)), ("updates", (999, 0, 5))]
)
def test_units_pick_their_counter(unit, counters):
    spec = {"type": "linear", "unit": unit, "num_steps": 10, "initial_value": 1, "final_value": 0}
    assert parse_schedule(spec, "p").value(*counters) == pytest.approx(0.5)


def test_bounds():
    assert Linear(1.0, 0.1, 10).bounds() == (0.1, 1.0)
    assert Exponential(1.0, 0.5, 10).bounds() == (0.0, 1.0)
    assert Exponential(1.0, 0.5, 10, 0.2).bounds() == (0.2, 1.0)
    assert Piecewise((1.0,), (3.0, 2.0)).bounds() == (2.0, 3.0)


LIN = {"type": "linear", "num_steps": 10, "initial_value": 1.0, "final_value": 0.0}
EXP = {"type": "exponential", "num_steps": 10, "initial_value": 1.0, "decay_rate": 0.5}
PIECE = {"type": "piecewise", "boundaries": [1, 2], "values": [1, 2, 3]}


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("fast", r"p: 'fast' is invalid; expected a number or a schedule dict with 'type'"),
        (True, r"p: True is invalid; expected a number or a schedule dict"),
        (math.nan, r"p: nan is invalid; expected a finite number"),
        ({"type": "linera"}, r"p.type: unknown schedule type 'linera'; did you mean 'linear'\?"),
        ({"value": 1}, r"p.type: unknown schedule type 'None'"),
        ({**LIN, "decay_rate": 0.5}, r"p.decay_rate: 0.5 is invalid; expected no such key; valid"),
        ({**LIN, "unit": "seconds"}, r"p.unit: 'seconds' is invalid; expected one of timesteps"),
        ({"type": "constant"}, r"p: .* is invalid; expected a dict with 'value'"),
        ({**LIN, "initial_value": "1"}, r"p.initial_value: '1' is invalid; expected a finite"),
        ({**LIN, "num_steps": 0}, r"p.num_steps: 0 is invalid; expected an int >= 1"),
        ({**LIN, "num_steps": 2.5}, r"p.num_steps: 2.5 is invalid; expected an int >= 1"),
        ({**LIN, "fraction": 0.1}, r"p: .* is invalid; expected either num_steps or fraction"),
        (
            {**LIN, "num_steps": None, "fraction": 0.1},
            r"p: .* is invalid; expected either num_steps or fraction",
        ),
        (
            {"type": "linear", "fraction": 1.5, "initial_value": 1, "final_value": 0},
            r"p.fraction: 1.5 is invalid; expected a number in \(0, 1\]",
        ),
        (
            {"type": "linear", "fraction": 0.5, "initial_value": 1, "final_value": 0},
            r"p.fraction: 0.5 is invalid; expected a known horizon. fraction needs the training",
        ),
        (
            {
                "type": "linear",
                "fraction": 0.5,
                "initial_value": 1,
                "final_value": 0,
                "unit": "episodes",
            },
            r"p.unit: 'episodes' is invalid; expected 'timesteps' with fraction",
        ),
        (
            {**EXP, "decay_rate": 1.5},
            r"p.decay_rate: 1.5 is invalid; expected a number in \(0, 1\]",
        ),
        ({**EXP, "final_value": 2.0}, r"p.final_value: 2.0 is invalid; expected a number <= 1.0"),
        ({**PIECE, "boundaries": 3}, r"p.boundaries: 3 is invalid; expected a list of numbers"),
        ({**PIECE, "values": [1, "x", 3]}, r"p.values\[1\]: 'x' is invalid; expected a finite"),
        ({**PIECE, "boundaries": [2, 2]}, r"p.boundaries: .* is invalid; expected strictly incr"),
        ({**PIECE, "values": [1, 2]}, r"p.values: .* is invalid; expected 3 values \(one more"),
    ],
)
def test_schedule_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_schedule(spec, "p")


def test_ppo_schedule_names():
    check_schedule("agent.lr_schedule", "constant", None)
    with pytest.raises(ConfigError, match=r"agent.lr_schedule: unknown schedule 'cosine'"):
        check_schedule("agent.lr_schedule", "cosine", 100)
    with pytest.raises(ConfigError, match=r"agent.lr_schedule: schedule 'linear' needs sched"):
        check_schedule("agent.lr_schedule", "linear", None)
    # 'linear' is SB3's progress_remaining decay: lr * (1 - t / horizon), 0 after the horizon
    linear = named_schedule(3e-4, "linear", "agent.learning_rate", 1000)
    assert linear.value(250, 0, 0) == 3e-4 * (1.0 - 250 / 1000)
    assert linear.value(2000, 0, 0) == 0.0
    assert named_schedule(LIN, "constant", "p", None) == Linear(1.0, 0.0, 10)
    with pytest.raises(ConfigError, match=r"p: .* is invalid; expected a number with the 'linear'"):
        named_schedule(LIN, "linear", "p", 1000)


# ---------------------------------------------------------------------------- PPO
class _UpdateLog(Observer):
    def __init__(self):
        self.rows = []

    def on_update(self, agent, metrics):
        lr = agent.optimizer.param_groups[0]["lr"]
        fused = None if agent._fused is None else agent._fused.entropy_coef
        self.rows.append(
            (metrics[tags.LEARNING_RATE], lr, agent.entropy_coef, fused, agent.timesteps)
        )


def _run_ppo(num_updates, **kwargs):
    agent = Agent.create(
        "ppo",
        states={"type": "float", "shape": (3,)},
        actions={"type": "int", "num_values": 2},
        device="cpu",
        seed=0,
        rollout_length=8,
        minibatch_size=8,
        epochs=1,
        **kwargs,
    )
    log = _UpdateLog()
    agent.observers.append(log)
    rng = np.random.default_rng(0)
    while agent.updates < num_updates:
        agent.act(rng.standard_normal(3).astype(np.float32))
        agent.observe(1.0, False)
    return agent, log.rows


@pytest.mark.parametrize("fast", [True, False])
def test_ppo_learning_rate_and_entropy_follow_their_schedules(fast):
    lr = {"type": "exponential", "unit": "updates", "num_steps": 1, "initial_value": 1e-3}
    entropy = {
        "type": "piecewise",
        "unit": "updates",
        "boundaries": [0, 1],
        "values": [0, 0.1, 0.01],
    }
    agent, rows = _run_ppo(
        3, learning_rate={**lr, "decay_rate": 0.5}, entropy_coef=entropy, fast_update=fast
    )
    assert (agent._fused is not None) == fast
    # update k runs after k updates: lr 1e-3 * 0.5**k; entropy 0 (k=0), 0.1 (k=1), 0.01 (k=2)
    expected_lr = [1e-3, 5e-4, 2.5e-4]
    assert [row[0] for row in rows] == pytest.approx(expected_lr)
    assert [row[1] for row in rows] == pytest.approx(expected_lr)
    assert [row[2] for row in rows] == pytest.approx([0.0, 0.1, 0.01])
    if fast:
        assert [row[3] for row in rows] == [row[2] for row in rows]


def test_ppo_linear_lr_schedule_name_is_unchanged():
    _, rows = _run_ppo(3, lr_schedule="linear", schedule_timesteps=64, learning_rate=1e-3)
    for k, row in enumerate(rows):  # update k starts at 8 * (k + 1) timesteps
        assert row[1] == 1e-3 * max(0.0, 1.0 - 8 * (k + 1) / 64)  # former ``scheduled``, exactly


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"learning_rate": 2.0}, r"agent.learning_rate: 2.0 is invalid; expected a number in"),
        (
            {"learning_rate": {**LIN, "initial_value": 2.0}},
            r"agent.learning_rate: .* is invalid; expected a schedule with values in \[0.0, 1.0\]",
        ),
        ({"clip_ratio": {"type": "sawtooth"}}, r"agent.clip_ratio.type: unknown schedule type"),
        (
            {"learning_rate": LIN, "lr_schedule": "linear", "schedule_timesteps": 10},
            r"agent.learning_rate: .* expected a number with the 'linear' schedule name",
        ),
    ],
)
def test_ppo_schedule_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _run_ppo(0, **kwargs)
