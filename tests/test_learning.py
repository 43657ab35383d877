import numpy as np
import pytest

from forceexp import Runner
from forceexp.environments.testing import IdentityEnvironment, TargetEnvironment
from forceexp.execution.milestones import ReturnThreshold


def test_ppo_learns_identity_in_seconds():
    agent = {
        "agent": "ppo",
        "seed": 0,
        "device": "cpu",
        "rollout_length": 32,
        "minibatch_size": 64,
        "epochs": 4,
        "learning_rate": 3e-3,
    }
    runner = Runner(agent=agent, environment=IdentityEnvironment, num_parallel=4, seed=0)
    runner.run(num_timesteps=4000, use_tqdm=False)
    result = runner.evaluate(num_episodes=10)
    runner.close()
    assert np.mean(runner.episode_returns[:20]) < 4.0  # random play scores about 2 of 8
    assert result["return_mean"] >= 7.5


def test_ppo_learns_a_continuous_target():
    agent = {
        "agent": "ppo",
        "seed": 0,
        "device": "cpu",
        "rollout_length": 64,
        "minibatch_size": 64,
        "epochs": 10,
        "learning_rate": 3e-3,
        "discount": 0.0,
        "gae_lambda": 0.0,
    }
    runner = Runner(agent=agent, environment=TargetEnvironment, num_parallel=4, seed=0)
    runner.run(num_timesteps=8000, use_tqdm=False)
    result = runner.evaluate(num_episodes=10)
    runner.close()
    assert np.mean(runner.episode_returns[:20]) < -3.0  # random play: about -5.3 per episode
    assert result["return_mean"] > -1.0


@pytest.mark.slow
def test_ppo_solves_cartpole_with_default_settings():
    runner = Runner(
        agent={
            "agent": "ppo",
            "seed": 0,
            "device": "cpu",
            "lr_schedule": "linear",
            "clip_schedule": "linear",
            "schedule_timesteps": 100_000,
        },
        environment="CartPole-v1",
        num_parallel=8,
        seed=0,
    )
    solved = ReturnThreshold(475.0)  # rolling-100 training return, as RL-Zoo reports it
    runner.run(num_timesteps=100_000, callback=solved, use_tqdm=False)
    result = runner.evaluate(num_episodes=20)
    runner.close()
    assert solved.timesteps is not None and solved.timesteps <= 100_000
    assert result["return_mean"] >= 475
