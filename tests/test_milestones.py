"""Runner callbacks: time-to-solve (ReturnThreshold), evaluation during training, chaining."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from forceexp import Environment, Runner
from forceexp.environments.testing import IdentityEnvironment
from forceexp.errors import ConfigError
from forceexp.execution.milestones import (
    PeriodicEvaluation,
    ReturnThreshold,
    chain,
    stop_reason,
)


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
    assert stop_reason(runner, None, 60, None, stopping) == (
        "solved: the mean return of the last 10 episodes reached 20.5 at 25 timesteps"
    )
    assert watch.stopped is None  # reached, but it did not stop the run


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


def _dqn_runner() -> Runner:
    agent = {
        "agent": "dqn",
        "seed": 0,
        "device": "cpu",
        "learning_rate": 3e-3,
        "learning_starts": 100,
        "train_freq": 1,
        "target_update_interval": 50,
        "discount": 0.5,
        "exploration": {"type": "linear", "num_steps": 800, "initial_value": 1, "final_value": 0},
    }
    return Runner(agent=agent, environment=IdentityEnvironment, num_parallel=2, seed=0)


def test_periodic_evaluation_records_and_restores_the_best_weights():
    runner = _dqn_runner()
    periodic = PeriodicEvaluation(frequency=500, num_episodes=5, keep_best=True, seed=7)
    runner.run(num_timesteps=2500, callback=periodic, use_tqdm=False)
    marks = [t for t, _ in periodic.history]
    assert 500 <= marks[0] < 520 and all(b - a >= 500 for a, b in itertools.pairwise(marks))
    assert periodic.best[1] == 8.0
    with torch.no_grad():  # ruin the final weights: the best ones come back
        for p in runner.agent.q.parameters():
            p.zero_()
    assert periodic.finish(runner) and periodic.restored
    final = periodic.history[-1]  # the final (ruined) weights were evaluated too
    assert final[0] == runner.timesteps and final[1] < 4.0
    assert runner.evaluate(num_episodes=10)["return_mean"] == 8.0
    runner.close()


def test_periodic_evaluation_stops_at_a_return_and_chains_with_other_callbacks():
    runner = _dqn_runner()
    periodic = PeriodicEvaluation(frequency=300, num_episodes=5, stop_return=8.0)
    solve = ReturnThreshold(100.0)  # never reached: only the evaluation stops the run
    runner.run(num_timesteps=20_000, callback=chain(solve, periodic), use_tqdm=False)
    assert runner.timesteps < 20_000 and periodic.history[-1][1] >= 8.0
    reason = stop_reason(runner, 20_000, None, solve, periodic)
    assert reason.startswith(f"early stop: the evaluation at {runner.timesteps} timesteps returned")
    assert reason.endswith(">= evaluation.stop_return 8")
    assert not periodic.finish(runner)  # keep_best off: nothing restored
    runner.close()
    assert chain(None, None) is None and chain(None, solve) is solve


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frequency": 0}, r"evaluation.frequency: 0 is invalid; expected an int >= 1"),
        ({"frequency": 10, "num_episodes": 1.5}, r"evaluation.num_episodes: 1.5 is invalid"),
        ({"frequency": 10, "stop_return": "high"}, r"evaluation.stop_return: 'high' is invalid"),
    ],
)
def test_periodic_evaluation_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PeriodicEvaluation(**kwargs)


def test_train_writes_the_evaluations_into_results(compose_cfg):
    from forceexp.experiment import train

    cfg = compose_cfg(
        "agent=dqn",
        "env=identity",
        "runner.num_timesteps=1500",
        "evaluation.frequency=500",
        "evaluation.keep_best=true",
        "agent.learning_starts=100",
        "solve_return=6.0",
    )
    results = train(cfg)
    assert results["evaluations"][-1]["timesteps"] == results["timesteps"] >= 1500
    assert results["best_eval_return_mean"] == max(e["return_mean"] for e in results["evaluations"])
    assert isinstance(results["restored_best"], bool)
    solved = [e["timesteps"] for e in results["evaluations"] if e["return_mean"] >= 6.0]
    assert results["eval_solved_timesteps"] == (solved[0] if solved else None)
    assert results["stop_reason"] == "budget: 1500 timesteps"
