"""Vectorised environments: Gymnasium parity, the vectorised runner loop, evaluation, errors."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import pytest

from forceexp import Environment, Runner
from forceexp.environments import VectorizedEnvironment
from forceexp.environments.classic_control import AcrobotVectorized, CartPoleVectorized
from forceexp.environments.remote import RemoteEnvironmentError
from forceexp.errors import ConfigError, ProtocolError

SIZE = 6
LENGTHS = 2 + np.arange(SIZE) % 4  # sub-environment i's episodes last LENGTHS[i] steps


class Countdown(Environment):
    """Episodes of ``length`` steps; reward = step number; state = steps left."""

    def __init__(self, length: int = 3) -> None:
        self.length, self.step = length, 0

    def states(self) -> dict[str, Any]:
        return {"type": "float", "shape": [1]}

    def actions(self) -> dict[str, Any]:
        return {"type": "int", "shape": [], "num_values": 2}

    def reset(self, seed: int | None = None) -> np.ndarray:
        self.step = 0
        return np.array([self.length], dtype=np.float32)

    def execute(self, actions: Any) -> tuple[np.ndarray, int, float]:
        self.step += 1
        left = self.length - self.step
        return np.array([left], dtype=np.float32), int(left == 0), float(self.step)


class CountdownVectorized(VectorizedEnvironment):
    """``SIZE`` Countdowns with lengths ``LENGTHS``, stepped together."""

    def __init__(self, num_environments: int = SIZE, max_episode_timesteps: int | None = None):
        super().__init__(num_environments, max_episode_timesteps)
        self.lengths = LENGTHS[:num_environments].astype(np.float32)
        self.steps = np.zeros(num_environments, dtype=np.float32)

    def states(self) -> dict[str, Any]:
        return Countdown().states()

    def actions(self) -> dict[str, Any]:
        return Countdown().actions()

    def _reset(self, rows: np.ndarray) -> np.ndarray:
        self.steps[rows] = 0
        return (self.lengths - self.steps)[:, None]

    def _execute(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.steps += 1
        left = self.lengths - self.steps
        return left[:, None], left == 0, self.steps.copy()


def both_runners(**kwargs: Any) -> tuple[Runner, Runner]:
    """The batched runner over ``SIZE`` Countdowns and the vectorised runner over their twin."""
    agent = {"agent": "random", "seed": 0}
    batched = Runner(
        agent=dict(agent), environments=[{"environment": Countdown, "length": n} for n in LENGTHS]
    )
    vectorized = Runner(agent=dict(agent), environment=CountdownVectorized, **kwargs)
    assert vectorized.vectorized is not None and vectorized.num_parallel == SIZE
    return batched, vectorized


def statistics(runner: Runner) -> tuple[Any, ...]:
    return (
        runner.timesteps,
        runner.episodes,
        runner.episode_returns,
        runner.episode_timesteps,
        runner.updates,
    )


@pytest.mark.parametrize(
    "run",
    [
        {"num_episodes": 9},
        {"num_timesteps": 23},
        {"num_timesteps": 24, "num_episodes": 100},
        {"num_episodes": 13, "sync_episodes": True},
        {"num_timesteps": 40, "sync_episodes": True},
        {"num_episodes": 11, "evaluation": True},
    ],
)
def test_vectorised_loop_matches_the_batched_loop(run: dict[str, Any]) -> None:
    batched, vectorized = both_runners()
    for _ in range(2):  # a second run continues the statistics
        batched.run(**run, use_tqdm=False)
        vectorized.run(**run, use_tqdm=False)
        assert statistics(vectorized) == statistics(batched)
    assert vectorized.timesteps == sum(vectorized.episode_timesteps)
    assert len(vectorized.episode_seconds) == vectorized.episodes


def test_vectorised_loop_callbacks_and_time_limit_match() -> None:
    batched, vectorized = both_runners()
    seen: dict[int, list[tuple[int, int]]] = {id(batched): [], id(vectorized): []}

    def callback(runner: Runner, parallel: int) -> bool:
        seen[id(runner)].append((parallel, runner.episodes))
        return runner.episodes < 7  # stop after the 7th episode

    for runner in (batched, vectorized):
        runner.run(num_episodes=50, callback=callback, use_tqdm=False)
    assert seen[id(vectorized)] == seen[id(batched)]
    assert statistics(vectorized) == statistics(batched)

    limited = Runner(agent="random", environment=CountdownVectorized, max_episode_timesteps=3)
    limited.run(num_episodes=12, use_tqdm=False)
    assert max(limited.episode_timesteps) == 3  # lengths 4 and 5 truncated at the limit
    assert limited.vectorized.max_episode_timesteps() == 3


def test_vectorised_environment_reports_truncation_and_resets_only_done() -> None:
    env = CountdownVectorized(max_episode_timesteps=3)
    first = env.reset()
    terminals = []
    for _ in range(3):
        states, terminal, rewards = env.execute(np.zeros(SIZE, dtype=np.int64))
        terminals.append(terminal.tolist())
    assert terminals[1] == [1, 0, 0, 0, 1, 0]  # length 2 ends at step 2
    # length 3 ends; the others hit the limit (ended ones too: no automatic reset)
    assert terminals[2] == [2, 1, 2, 2, 2, 1]
    assert rewards.dtype == np.float32 and terminal.dtype == np.int64
    again = env.reset_where(np.array([False, True, False, False, False, False]))
    assert again[1].tolist() == first[1].tolist() and again[2].tolist() == states[2].tolist()


def _gym_pair(level: str, cls: type, count: int, limit: int) -> tuple[Any, list[Any]]:
    ours = Environment.create(cls(count), max_episode_timesteps=limit)
    ours.reset(seed=0)
    theirs = [gymnasium.make(level, max_episode_steps=limit) for _ in range(count)]
    for i, env in enumerate(theirs):
        env.reset(seed=i)
        env.unwrapped.state = ours.state[:, i].copy()
    return ours, theirs


@pytest.mark.parametrize(
    ("level", "cls", "limit", "kinds"),
    [
        ("CartPole-v1", CartPoleVectorized, 30, {0, 1, 2}),
        ("Acrobot-v1", AcrobotVectorized, 60, {0, 2}),
    ],
)
def test_matches_gymnasium_step_by_step(level: str, cls: type, limit: int, kinds: set) -> None:
    count = 8
    ours, theirs = _gym_pair(level, cls, count, limit)
    rng = np.random.default_rng(1)
    ends = set()
    for _ in range(200):
        actions = rng.integers(0, ours.actions()["num_values"], count)
        states, terminals, rewards = ours.execute(actions)
        done = terminals > 0
        for i, env in enumerate(theirs):
            obs, reward, terminated, truncated, _ = env.step(int(actions[i]))
            np.testing.assert_allclose(states[i], obs, atol=1e-5)
            assert terminals[i] == (1 if terminated else 2 if truncated else 0)
            assert rewards[i] == reward
            ends.add(int(terminals[i]))
        ours.reset_where(done)
        for i in np.flatnonzero(done):
            theirs[i].reset()
            theirs[i].unwrapped.state = ours.state[:, i].copy()
    assert ends == kinds  # the kinds of episode end that were compared


def test_vectorised_evaluation_and_runner_evaluate() -> None:
    runner = Runner(
        agent={"agent": "ppo", "network": {"type": "auto", "size": 8, "depth": 1}, "seed": 0},
        environment={"environment": "cartpole_vectorized", "num_environments": 4},
        seed=3,
    )
    for episodes in (3, 10):  # fewer episodes than sub-environments, and more
        result = runner.evaluate(num_episodes=episodes)
        assert result["episodes"] == episodes
        assert 8 <= result["return_mean"] <= 500
        assert result["length_mean"] == result["return_mean"]  # reward 1 per step
    assert runner.evaluate(num_episodes=5) == runner.evaluate(num_episodes=5)  # seeded
    runner.run(num_timesteps=64, evaluation=True, use_tqdm=False)
    assert runner.timesteps == 64 and runner.updates == 0
    runner.close()


def test_vectorised_evaluation_of_a_recurrent_agent() -> None:
    runner = Runner(
        agent={
            "agent": "ppo",
            "network": [{"type": "dense", "size": 8}, {"type": "lstm", "size": 4}],
            "seed": 0,
        },
        environment={"environment": "cartpole_vectorized", "num_environments": 3},
    )
    assert runner.agent.initial_internals()
    assert runner.evaluate(num_episodes=4)["episodes"] == 4
    runner.close()


def test_create_and_hydra_style_names() -> None:
    env = Environment.create("cartpole_vectorized", num_environments=5, max_episode_timesteps=7)
    assert isinstance(env, CartPoleVectorized)
    assert env.num_environments == 5 and env.max_episode_timesteps() == 7
    assert env.reset(seed=0).shape == (5, 4)
    acrobot = Environment.create({"environment": "acrobot_vectorized", "num_environments": 2})
    assert acrobot.reset().shape == (2, 6) and acrobot.max_episode_timesteps() == 500
    assert Environment.create(env) is env


def test_train_py_config_on_cartpole_vec(compose_cfg) -> None:
    from forceexp.experiment import train

    cfg = compose_cfg("env=cartpole_vec", "runner.num_parallel=4", "runner.num_timesteps=256")
    results = train(cfg)
    assert results["timesteps"] == 256 and results["eval_episodes"] == 2


def test_bad_arguments_give_clear_errors() -> None:
    spec = {"environment": "cartpole_vectorized", "num_environments": 4}
    with pytest.raises(ConfigError, match=r"num_parallel: 8 differs from num_environments=4"):
        Runner(agent="random", environment=spec, num_parallel=8)
    with pytest.raises(ConfigError, match="give it alone"):
        Runner(agent="random", environments=[spec, "CartPole-v1"])
    runner = Runner(agent="random", environment=spec, num_parallel=4)
    with pytest.raises(ConfigError, match="batch_agent_calls: False is invalid"):
        runner.run(num_episodes=1, batch_agent_calls=False)
    with pytest.raises(RemoteEnvironmentError, match="runs only in the runner's process"):
        Environment.create(spec, remote="multiprocessing").reset()
    with pytest.raises(ConfigError, match="unknown environment 'cartpole_vectorised'"):
        Environment.create("cartpole_vectorised")
    with pytest.raises(ConfigError, match="num_environments: 0 is invalid"):
        CartPoleVectorized(0)
    with pytest.raises(ConfigError, match="max_episode_timesteps: 0 is invalid"):
        CartPoleVectorized(2, max_episode_timesteps=0)
    env = CartPoleVectorized(3)
    with pytest.raises(ProtocolError, match="before reset"):
        env.execute(np.zeros(3, dtype=np.int64))
    env.reset()
    with pytest.raises(ConfigError, match=r"shape \(2,\); expected \(3,\)"):
        env.execute(np.zeros(2, dtype=np.int64))
    with pytest.raises(ConfigError, match=r"must lie in \[0, 2\)"):
        env.execute(np.array([0, 1, 2]))
    with pytest.raises(ConfigError, match=r"expected bool \(3,\)"):
        env.reset_where(np.array([0, 1, 0]))


@pytest.mark.slow
def test_ppo_learns_cartpole_vectorized() -> None:
    runner = Runner(
        agent={"agent": "ppo", "seed": 0, "device": "cpu"},
        environment={"environment": "cartpole_vectorized", "num_environments": 8},
        seed=0,
    )
    assert runner.evaluate(num_episodes=10)["return_mean"] < 50  # untrained: about 9
    runner.run(num_timesteps=30_000, use_tqdm=False)
    assert runner.timesteps == 30_000
    assert np.mean(runner.episode_returns[:20]) < 50  # random play: about 22
    assert np.mean(runner.episode_returns[-20:]) >= 150  # seed 0: about 400
    assert runner.evaluate(num_episodes=10)["return_mean"] >= 300  # seed 0: 500
    runner.close()
