"""Time-to-solve tracking (ReturnThreshold) and the env reward thresholds it reads."""

from __future__ import annotations

import numpy as np
import pytest

from forceexp import Environment, Runner
from forceexp.errors import ConfigError
from forceexp.execution.milestones import ReturnThreshold


class CountingEnv(Environment):
    """One-step episodes whose reward is the episode index (so the rolling mean grows)."""

    def __init__(self) -> None:
        self.episode = 0

    def states(self) -> dict:
        return dict(type="float", shape=(1,))

    def actions(self) -> dict:
        return dict(type="int", num_values=2)

    def reset(self, seed: int | None = None) -> np.ndarray:
        return np.zeros(1, np.float32)

    def execute(self, actions) -> tuple:
        self.episode += 1
        return np.zeros(1, np.float32), 1, float(self.episode)


def test_threshold_records_the_first_crossing_and_can_stop_the_run() -> None:
    runner = Runner(agent="random", environment=CountingEnv())
    watch = ReturnThreshold(threshold=20.5, window=10)
    runner.run(num_episodes=60, callback=watch, use_tqdm=False)
    # mean of episodes 16..25 is 20.5: reached at the 25th episode, the run went on
    assert watch.timesteps == 25
    assert watch.seconds is not None and watch.seconds >= 0
    assert runner.episodes == 60
    stopping = ReturnThreshold(threshold=20.5, window=10, stop=True)
    runner = Runner(agent="random", environment=CountingEnv())
    runner.run(num_episodes=60, callback=stopping, use_tqdm=False)
    assert runner.episodes == 25


def test_unreached_threshold_stays_none() -> None:
    runner = Runner(agent="random", environment=CountingEnv())
    watch = ReturnThreshold(threshold=1e9, window=5)
    runner.run(num_episodes=20, callback=watch, use_tqdm=False)
    assert watch.timesteps is None and watch.seconds is None


def test_gymnasium_reward_threshold_is_exposed() -> None:
    env = Environment.create("CartPole-v1")
    assert env.reward_threshold() == 475.0
    env.close()
    assert Environment.create(CountingEnv()).reward_threshold() is None


def test_vectorized_environments_carry_the_gymnasium_thresholds() -> None:
    assert Environment.create("cartpole_vectorized", num_environments=2).reward_threshold() == 475
    assert Environment.create("acrobot_vectorized", num_environments=2).reward_threshold() == -100


def test_bad_thresholds_are_reported() -> None:
    with pytest.raises(ConfigError, match="solve_return"):
        ReturnThreshold("high")
    with pytest.raises(ConfigError, match="int >= 1"):
        ReturnThreshold(475.0, window=0)
