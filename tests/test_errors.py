"""Issue 17 item 10: every user-facing entry names the thing, the value and the expectation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from forceexp import Agent, Environment, Runner
from forceexp.errors import ConfigError, brief, check_int
from forceexp.experiment import check_config

AGENT = {"agent": "ppo", "device": "cpu", "network": {"type": "auto", "size": 8, "depth": 1}}
ROOT = Path(__file__).resolve().parents[1]


def test_check_int_and_brief() -> None:
    check_int("n", 3, 1)
    check_int("n", None, 1, optional=True)
    with pytest.raises(ConfigError, match=r"^n: True is invalid; expected an int >= 1$"):
        check_int("n", True, 1)
    with pytest.raises(ConfigError, match=r"^n: 'x' is invalid; expected an int or None$"):
        check_int("n", "x", optional=True)
    assert repr(brief(np.zeros((9, 9)))) == "array(shape=(9, 9), dtype=float64)"
    assert repr(brief("y" * 200)).endswith("...")
    assert repr(brief(np.zeros((2, 2)))) == "array([[0., 0.], [0., 0.]])"


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("seed=abc", r"^seed: 'abc' is invalid; expected an int or None$"),
        ("runner.num_parallel=two", r"^runner.num_parallel: 'two' is invalid; expected an int"),
        ("runner.max_episode_timesteps=0", r"^runner.max_episode_timesteps: 0 is invalid"),
        ("eval_episodes=many", r"^eval_episodes: 'many' is invalid; expected an int >= 1$"),
        ("device=gpu", r"^device: 'gpu' is invalid; expected 'cpu', 'cuda'"),
        ("solve_return=high", r"^solve_return: 'high' is invalid; expected 'auto', a number"),
        ("stop_when_solved=maybe", r"^stop_when_solved: 'maybe' is invalid; expected true"),
    ],
)
def test_top_level_keys_are_checked(compose_cfg, override: str, match: str) -> None:
    check_config(compose_cfg())
    with pytest.raises(ConfigError, match=match):
        check_config(compose_cfg(override))


def test_cli_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "seed=abc", f"hydra.run.dir={tmp_path}"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: seed: 'abc' is invalid; expected an int or None"
    )


@pytest.fixture
def cartpole():
    env = Environment.create("CartPole-v1")
    yield env
    env.close()


@pytest.mark.parametrize(
    ("states", "match"),
    [
        ("hello", r"states.state: 'hello' is invalid; expected finite floats of shape \(4,\)"),
        (np.ones(4, dtype=complex), r"states.state: .* Got dtype complex128"),
        (np.full(4, np.nan), r"states.state: .* It contains NaN or inf"),
        (None, r"states.state: None is invalid; expected finite floats"),
    ],
)
def test_act_states_are_checked(cartpole, states: object, match: str) -> None:
    agent = Agent.create(AGENT, environment=cartpole)
    with pytest.raises(ConfigError, match=match):
        agent.act(states=states)
    agent.close()


@pytest.mark.parametrize(
    ("terminal", "reward", "match"),
    [
        ("yes", 1.0, r"observe.terminal: 'yes' is invalid; expected 0, 1 or 2"),
        (0.5, 1.0, r"observe.terminal: 0.5 is invalid"),
        (-1, 1.0, r"observe.terminal: -1 is invalid"),
        (False, 1j, r"observe.reward: 1j is invalid; expected a number"),
        (False, [[1.0], [1.0, 2.0]], r"observe.reward: .* is invalid"),
    ],
)
def test_observe_inputs_are_checked(cartpole, terminal: object, reward: object, match: str):
    agent = Agent.create(AGENT, environment=cartpole)
    agent.act(states=cartpole.reset())
    with pytest.raises(ConfigError, match=match):
        agent.observe(reward=reward, terminal=terminal)
    agent.observe(reward=1.0, terminal=1.0)  # an integral float is fine
    agent.close()


def test_experience_terminal_is_checked(cartpole) -> None:
    agent = Agent.create(AGENT, environment=cartpole)
    with pytest.raises(ConfigError, match=r"experience.terminal: \['x'\] is invalid"):
        agent.experience(states=[np.zeros(4)], actions=[0], terminal=["x"], reward=[1.0])
    agent.close()


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (
            np.array([0, 1]),
            r"CartPole-v1'\) actions: array\(\[0, 1\]\) is invalid; expected ints "
            r"in \[0, 2\) of shape \(\). Got shape \(2,\)",
        ),
        ("left", r"actions: 'left' is invalid; .* Got dtype <U4"),
        (0.5, r"actions: 0.5 is invalid; expected ints in \[0, 2\)"),
        (2, r"actions: 2 is invalid; .* Got values in \[2, 2\]"),
        (
            {"other": 1},
            r"actions: \{'other': 1\} is invalid; expected a dict with keys \['action'\]",
        ),
    ],
)
def test_execute_actions_are_checked(cartpole, action: object, match: str) -> None:
    cartpole.reset()
    with pytest.raises(ConfigError, match=match):
        cartpole.execute(action)
    cartpole.execute(1)


def test_nan_action_is_reported_as_an_action() -> None:
    env = Environment.create("Pendulum-v1")
    env.reset()
    with pytest.raises(ConfigError, match=r"Pendulum-v1'\) actions: array\(\[nan\]\) .*NaN"):
        env.execute(np.array([np.nan]))
    env.close()


def test_runner_and_environment_arguments(cartpole) -> None:
    with pytest.raises(ConfigError, match=r"^seed: 'abc' is invalid; expected an int or None$"):
        Runner(agent=AGENT, environment="CartPole-v1", seed="abc")
    with pytest.raises(ConfigError, match=r"^max_episode_timesteps: 'x' is invalid"):
        Runner(agent=AGENT, environment="CartPole-v1", max_episode_timesteps="x")
    with pytest.raises(ConfigError, match=r"^max_episode_timesteps: 0 is invalid"):
        Environment.create("CartPole-v1", remote="multiprocessing", max_episode_timesteps=0)
    with pytest.raises(ConfigError, match=r"^seed: 1.5 is invalid"):
        Agent.create(AGENT, environment=cartpole, seed=1.5)


def test_load_refuses_another_environment(tmp_path: Path, cartpole) -> None:
    agent = Agent.create(AGENT, environment=cartpole)
    agent.save(tmp_path)
    agent.close()
    Agent.load(tmp_path, environment=cartpole).close()
    with pytest.raises(
        ConfigError,
        match=r"load.environment.states: \{'type': 'float', 'shape': \[3\].* is invalid; "
        r"expected the states the agent was saved with in .*agent.*\{'type': 'float', "
        r"'shape': \[4\]\}",
    ):
        Agent.load(tmp_path, environment="Pendulum-v1")
    with pytest.raises(
        ConfigError, match=r"load.environment.actions: \{'type': 'int'.*'num_values"
    ):
        Agent.load(tmp_path, environment={"environment": "Acrobot-v1"}, states=None)
