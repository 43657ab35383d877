"""Tensorforce's Runner API: callback frequencies, num_updates, evaluation, save_best_agent.

Also Tensorforce-style vectorizable and multi-actor environments driven as parallel slots.
"""

from __future__ import annotations

import numpy as np
import pytest

from forceexp import Agent, Environment, Runner
from forceexp.environments.actors import ParallelSlots
from forceexp.errors import ConfigError


class FixedLength(Environment):
    """Episodes of ``length`` steps; reward 1 per step; the state counts the steps."""

    def __init__(self, length: int = 7) -> None:
        self.length = length

    def states(self):
        return dict(type="float", shape=(1,))

    def actions(self):
        return dict(type="int", num_values=2)

    def reset(self):  # Tensorforce-style: no seed
        self.t = 0
        return np.zeros(1)

    def execute(self, actions):
        self.t += 1
        return np.full(1, self.t), self.t >= self.length, 1.0


def test_episode_callbacks_follow_callback_episode_frequency() -> None:
    runner = Runner(agent="random", environment=FixedLength)
    runner.run(num_episodes=3, use_tqdm=False)
    seen = []
    runner.run(
        num_episodes=6,
        callback=lambda r, p: seen.append(r.episodes),
        callback_episode_frequency=2,
        use_tqdm=False,
    )
    assert seen == [2, 4, 6]  # every 2nd episode; each run counts from 0 (as Tensorforce)
    assert runner.episodes == len(runner.episode_returns) == 6
    runner.close()


@pytest.mark.parametrize("num_parallel", [1, 2])
def test_timestep_callbacks_see_each_episodes_length(num_parallel: int) -> None:
    runner = Runner(agent="random", environment=FixedLength, num_parallel=num_parallel)
    lengths = []

    def callback(r, p):
        lengths.append(int(r.episode_timestep[p]))

    runner.run(num_episodes=2, callback=callback, callback_timestep_frequency=3, use_tqdm=False)
    assert lengths == ([3, 3, 6, 6] if num_parallel == 2 else [3, 6, 3, 6])
    runner.close()


def test_a_false_timestep_callback_truncates_the_running_episodes() -> None:
    runner = Runner(agent="random", environment=FixedLength, num_parallel=2)
    runner.run(
        num_episodes=10,
        callback=[lambda r, p: r.timesteps < 8, lambda r, p: None],  # None: go on
        callback_timestep_frequency=2,
        use_tqdm=False,
    )
    # stopped at 4 steps per slot: the next step truncates both episodes at length 5
    assert runner.episode_timesteps == [5, 5]
    assert runner.episodes == 2
    runner.close()


def test_num_updates_ends_the_run_after_that_many_updates() -> None:
    agent = dict(agent="ppo", rollout_length=8, minibatch_size=8, epochs=1)
    runner = Runner(agent=agent, environment=FixedLength)
    runner.run(num_updates=2, use_tqdm=False)
    assert runner.updates == 2
    assert runner.timesteps <= 2 * 8 + 1  # one step after the 2nd update truncates
    runner.run(num_updates=1, num_episodes=100, use_tqdm=False)
    assert runner.updates == 1
    runner.close()


def test_frequencies_are_checked() -> None:
    runner = Runner(agent="random", environment=FixedLength)
    with pytest.raises(ConfigError, match="not both"):
        runner.run(num_episodes=1, callback_episode_frequency=1, callback_timestep_frequency=1)
    with pytest.raises(ConfigError, match=r"run.num_updates: 0 is invalid"):
        runner.run(num_updates=0)
    with pytest.raises(ConfigError, match="num_episodes, num_timesteps and/or num_updates"):
        runner.run()
    runner.close()


def test_evaluation_environment_scores_and_saves_the_best_agent(tmp_path) -> None:
    runner = Runner(agent="random", environment=FixedLength, num_parallel=3, evaluation=True)
    assert runner.num_parallel == 2  # the last of the 3 environments evaluates
    scores = iter([1.0, 3.0, 2.0, 5.0, 4.0])
    saved_at = []

    def evaluation_callback(r):
        score = next(scores)
        if score in (1.0, 3.0, 5.0):  # the improvements
            saved_at.append(r.agent.timesteps)
        return score

    directory = tmp_path / "best"
    runner.run(
        num_episodes=10,
        evaluation_callback=evaluation_callback,
        save_best_agent=str(directory),
        use_tqdm=False,
    )
    # one evaluation episode after every 2 training episodes (2 training slots)
    assert runner.evaluation_returns == [7.0] * 5
    best = Agent.load(str(directory), filename="best-model")
    assert best.timesteps == saved_at[-1]
    runner.close()


def test_evaluation_run_calls_the_evaluation_callback_per_episode(tmp_path) -> None:
    runner = Runner(agent="random", environment=FixedLength)
    calls = []
    runner.run(num_episodes=3, evaluation=True, evaluation_callback=calls.append, use_tqdm=False)
    assert len(calls) == 3
    assert runner.evaluation_returns == runner.episode_returns == [7.0] * 3
    with pytest.raises(ConfigError, match="save_best_agent: the agent does not learn"):
        runner.run(num_episodes=1, evaluation=True, save_best_agent=str(tmp_path))
    runner.close()


def test_evaluation_needs_two_environments() -> None:
    with pytest.raises(ConfigError, match=r"Runner.evaluation: True is invalid; expected"):
        Runner(agent="random", environment=FixedLength, evaluation=True)
    with pytest.raises(ConfigError, match="instance cannot be copied"):
        Runner(agent="random", environment=FixedLength(), num_parallel=2, evaluation=True)


class Vectorizable(Environment):
    """Tensorforce's vectorizable protocol: episodes of 3 + index steps, reward = index + 1."""

    def __init__(self) -> None:
        self.resets = []

    def states(self):
        return dict(type="float", shape=(2,))

    def actions(self):
        return dict(type="int", num_values=3)

    def is_vectorizable(self):
        return True

    def reset(self, num_parallel=None):
        self.resets.append(num_parallel)
        self.index = np.arange(num_parallel or 1)
        self.t = 0
        states = np.stack([self.index, np.zeros(len(self.index))], axis=1).astype(float)
        return (self.index.copy(), states) if num_parallel else states[0]

    def execute(self, actions):
        assert len(actions) == len(self.index)
        self.t += 1
        terminal = self.t >= 3 + self.index
        reward = self.index + 1.0
        self.index = self.index[~terminal]
        states = np.stack([self.index, np.full(len(self.index), self.t)], axis=1).astype(float)
        return self.index.copy(), states, terminal, reward


def test_a_vectorizable_environment_runs_as_parallel_slots() -> None:
    runner = Runner(agent="random", environment=Vectorizable, num_parallel=3)
    assert isinstance(runner.vectorized, ParallelSlots)
    runner.run(num_episodes=5, use_tqdm=False)
    env = runner.vectorized.environment.environment
    assert env.resets == [3, 2]  # episodes restart together; the last round starts 2 only
    assert runner.episode_timesteps == [3, 4, 5, 3, 4]
    assert runner.episode_returns == [3.0, 8.0, 15.0, 3.0, 8.0]
    runner.close()


def test_a_vectorizable_environment_gets_the_limit_per_slot() -> None:
    runner = Runner(
        agent="random", environment=Vectorizable, num_parallel=3, max_episode_timesteps=4
    )
    runner.run(num_episodes=3, use_tqdm=False)
    assert runner.episode_timesteps == [3, 4, 4]  # the third slot is truncated at 4
    runner.close()


class TwoActors(Environment):
    """Tensorforce's multi-actor protocol: actor 1 leaves after 2 steps, actor 0 after 4."""

    def states(self):
        return dict(type="int", num_values=11)

    def actions(self):
        return dict(type="int", num_values=3)

    def num_actors(self):
        return 2

    def reset(self):
        self.index, self.t = np.arange(2), 0
        return self.index.copy(), np.array([3, 7])

    def execute(self, actions):
        assert len(actions) == len(self.index)
        self.t += 1
        terminal = np.array([self.t >= 4, self.t >= 2])[self.index]
        reward = np.ones(len(self.index)) * (self.index + 1)
        states = np.full(len(self.index), 5)  # one row per actor that acted, as Tensorforce's
        self.index = self.index[~terminal]  # example does: rows past len(parallel) are unused
        return self.index.copy(), states, terminal, reward


def test_a_multi_actor_environment_runs_its_actors_as_slots() -> None:
    runner = Runner(agent="random", environment=TwoActors)
    assert runner.num_parallel == 2
    runner.run(num_episodes=4, use_tqdm=False)
    assert sorted(runner.episode_timesteps) == [2, 2, 4, 4]
    assert sorted(runner.episode_returns) == [4.0, 4.0, 4.0, 4.0]
    with pytest.raises(ConfigError, match=r"evaluate: .* is multi-actor"):
        runner.evaluate(num_episodes=1)
    with pytest.raises(ConfigError, match="its 2 actors are the parallel slots"):
        Runner(agent="random", environment=TwoActors, num_parallel=2)
    runner.close()


class CheckedScalars(Environment):
    """Refuses anything but Python scalars for scalar actions, as Tensorforce-era code may."""

    def states(self):
        return dict(type="float", shape=(1,))

    def actions(self):
        return dict(
            choice=dict(type="int", num_values=3),
            level=dict(type="float", min_value=0.0, max_value=1.0),
            flag=dict(type="bool"),
            vector=dict(type="float", shape=(2,)),
        )

    def reset(self):
        return np.zeros(1)

    def execute(self, actions):
        assert type(actions["choice"]) is int and type(actions["level"]) is float
        assert type(actions["flag"]) is bool and actions["vector"].shape == (2,)
        return np.zeros(1), np.random.random() < 0.3, 1.0


@pytest.mark.parametrize("batch_agent_calls", [True, False])
def test_runner_hands_scalar_actions_over_as_python_scalars(batch_agent_calls: bool) -> None:
    runner = Runner(agent="random", environment=CheckedScalars, num_parallel=2)
    runner.run(num_episodes=4, batch_agent_calls=batch_agent_calls, use_tqdm=False)
    assert runner.episodes >= 4
    runner.close()


def test_each_run_keeps_its_own_statistics() -> None:
    runner = Runner(agent="random", environment=FixedLength)
    runner.run(num_episodes=3, use_tqdm=False)
    runner.run(num_episodes=2, evaluation=True, use_tqdm=False)
    assert runner.episode_returns == [7.0, 7.0]  # the evaluation run's episodes only
    assert (runner.episodes, runner.timesteps) == (2, 14)
    runner.close()
