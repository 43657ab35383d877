"""Gymnasium vector environments: autoreset modes, true final states, runners, replay, errors."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import batch_space

from forceexp import Environment, Runner
from forceexp.environments import GymVectorEnvironment
from forceexp.errors import ConfigError, ProtocolError

SIZE = 4
LENGTHS = 3 + np.arange(SIZE)  # row i's episodes last LENGTHS[i] steps; odd rows truncate
MARKER = 100.0  # reward of a NEXT_STEP reset step: must never reach the agent


def _done(count: np.ndarray, rows: Any) -> tuple[np.ndarray, np.ndarray]:
    done = count >= LENGTHS[rows]
    odd = np.asarray(rows) % 2 == 1
    return done & ~odd, done & odd


class Count(gymnasium.Env):
    """Observation = steps into the episode."""

    observation_space = spaces.Box(0, 100, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, row: int) -> None:
        self.row, self.count = row, 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.count = 0
        return np.array([0.0], np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.count += 1
        term, trunc = _done(np.array(self.count), self.row)
        return np.array([self.count], np.float32), 1.0, bool(term), bool(trunc), {}


class CountVectorEnv(gymnasium.vector.VectorEnv):
    """``Count`` vectorised natively (no reset_mask), like Gymnasium's ``CartPoleVectorEnv``."""

    def __init__(self, same_step: bool = False) -> None:
        self.same_step = same_step
        mode = AutoresetMode.SAME_STEP if same_step else AutoresetMode.NEXT_STEP
        self.metadata = {"autoreset_mode": mode}
        self.num_envs = SIZE
        self.single_observation_space, self.single_action_space = (
            Count.observation_space,
            Count.action_space,
        )
        self.observation_space = batch_space(self.single_observation_space, SIZE)
        self.action_space = batch_space(self.single_action_space, SIZE)
        self.count = np.zeros(SIZE, np.int64)
        self.prev_done = np.zeros(SIZE, bool)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.count[:], self.prev_done[:] = 0, False
        return self.count[:, None].astype(np.float32), {}

    def step(self, actions: Any) -> tuple[Any, ...]:
        assert self.action_space.contains(actions)
        self.count += 1
        rewards = np.ones(SIZE, np.float32)
        term, trunc = _done(self.count, np.arange(SIZE))
        info: dict[str, Any] = {}
        if self.same_step:
            done = term | trunc
            final = np.empty(SIZE, dtype=object)
            for i in np.flatnonzero(done):
                final[i] = np.array([self.count[i]], np.float32)
            info = {"final_obs": final, "_final_obs": done}
            self.count[done] = 0
        else:
            self.count[self.prev_done] = 0
            rewards[self.prev_done] = MARKER
            term[self.prev_done] = trunc[self.prev_done] = False
            self.prev_done = term | trunc
        return self.count[:, None].astype(np.float32), rewards, term, trunc, info


def sync(mode: AutoresetMode) -> Any:
    return lambda: SyncVectorEnv([lambda i=i: Count(i) for i in range(SIZE)], autoreset_mode=mode)


FACTORIES = {
    "sync-next": sync(AutoresetMode.NEXT_STEP),
    "sync-same": sync(AutoresetMode.SAME_STEP),
    "native-next": lambda: CountVectorEnv(),
    "native-same": lambda: CountVectorEnv(same_step=True),
}


@pytest.mark.parametrize("kind", FACTORIES)
def test_finished_rows_return_true_final_states_and_restart_at_zero(kind):
    env = Environment.create(FACTORIES[kind]())
    assert isinstance(env, GymVectorEnvironment) and env.states()["shape"] == (1,)
    states = env.reset(seed=0)
    expected = np.zeros(SIZE)
    for _ in range(30):
        acting = np.ones(SIZE, bool) if env.pending is None else ~env.pending
        assert np.array_equal(states[acting, 0], expected[acting])
        states, terminals, rewards = env.execute(np.zeros(SIZE, np.int64))
        started = ~acting
        expected[acting] += 1
        expected[started] = 0
        assert np.array_equal(states[:, 0], expected)
        assert np.all(rewards[acting] == 1.0)
        done = (expected == LENGTHS) & acting
        term, trunc = _done(expected, np.arange(SIZE))
        assert np.array_equal(terminals[acting], np.where(term, 1, np.where(trunc, 2, 0))[acting])
        if done.any():
            states = env.reset_where(done)
            expected[done & (env.pending is None or ~env.pending)] = 0
    env.close()


class Spy:
    def __init__(self, agent: Any) -> None:
        self.observe, self.rewards = agent.observe, []

    def __call__(self, rewards: Any, terminals: Any, **kwargs: Any) -> bool:
        self.rewards.append(np.asarray(rewards).copy())
        return self.observe(rewards, terminals, **kwargs)


@pytest.mark.parametrize("kind", FACTORIES)
def test_runner_never_observes_a_reset_step(kind):
    runner = Runner(agent="random", environment=FACTORIES[kind](), seed=0)
    spy = Spy(runner.agent)
    runner.agent.observe = spy
    runner.run(num_episodes=40, use_tqdm=False)
    observed = np.concatenate(spy.rewards)
    assert len(observed) == runner.timesteps >= 120 and np.all(observed == 1.0)
    assert set(runner.episode_timesteps) <= set(LENGTHS.tolist())
    assert runner.evaluate(num_episodes=8)["length_mean"] == np.mean(np.repeat(LENGTHS, 2))
    runner.close()


@pytest.mark.parametrize("kind", FACTORIES)
def test_dqn_stores_true_transitions_and_bootstraps_truncations(kind):
    agent = {
        "agent": "dqn",
        "seed": 0,
        "network": {"type": "auto", "size": 16, "depth": 1},
        "batch_size": 16,
        "learning_starts": 32,
    }
    runner = Runner(agent=agent, environment=FACTORIES[kind](), seed=0)
    runner.run(num_timesteps=300, use_tqdm=False)
    memory = runner.agent.memory
    assert len(memory) == runner.timesteps and runner.updates > 0
    batch = memory.sample(512)
    state, following = batch.states["state"][:, 0].numpy(), batch.next_states["state"][:, 0].numpy()
    assert np.all(following == state + 1) and state.max() < LENGTHS.max()
    discounts = batch.discounts.numpy()  # only row 3 reaches 6 (truncated: bootstraps)
    assert np.all(discounts[following == 6] > 0.0) and (following == 6).any()
    assert np.any(discounts[following == 3] == 0.0)  # row 0 terminates at 3
    runner.close()


def test_sac_runs_on_a_sync_pendulum():
    environment = gymnasium.make_vec("Pendulum-v1", num_envs=4, vectorization_mode="sync")
    agent = {"agent": "sac", "seed": 0, "batch_size": 16, "learning_starts": 64}
    runner = Runner(agent=agent, environment=environment, seed=0)
    runner.run(num_timesteps=200, use_tqdm=False)
    assert len(runner.agent.memory) == runner.timesteps and runner.updates > 0
    runner.close()


def test_gymnasium_cartpole_vector_entry_point_by_key():
    env = Environment.create(
        "gym_vector",
        level="CartPole-v1",
        num_environments=8,
        vectorization_mode="vector_entry_point",
    )
    assert not env.masked_reset and env.max_episode_timesteps() == 500
    assert env.reward_threshold() == 475.0
    runner = Runner(agent="ppo", environment=env, seed=0)
    runner.run(num_timesteps=400, use_tqdm=False)
    assert runner.timesteps >= 400 and runner.episodes > 0
    runner.close()


@pytest.mark.slow
def test_ppo_learns_cartpole_on_gymnasium_make_vec():
    runner = Runner(agent="ppo", environment=gymnasium.make_vec("CartPole-v1", num_envs=8), seed=0)
    runner.run(num_timesteps=40_000, use_tqdm=False)
    assert np.mean(runner.episode_returns[-20:]) > 150
    runner.close()


def test_errors():
    with pytest.raises(ConfigError, match="environment: 'Count' is invalid; expected a gymnasium"):
        GymVectorEnvironment(Count(0))
    disabled = sync(AutoresetMode.DISABLED)()
    with pytest.raises(ConfigError, match=r"autoreset_mode.*expected NEXT_STEP or SAME_STEP"):
        Environment.create(disabled)
    with pytest.raises(ConfigError, match=r"max_episode_timesteps: 3 is invalid.*make_vec"):
        Environment.create(CountVectorEnv(), max_episode_timesteps=3)
    with pytest.raises(ConfigError, match="cannot make_vec Gymnasium env 'NoSuchEnv-v0'"):
        Environment.create("gym_vector", level="NoSuchEnv-v0", num_environments=2)
    env = Environment.create(CountVectorEnv(same_step=True))
    env.reset()
    env.execute(np.zeros(SIZE, np.int64))
    with pytest.raises(ProtocolError, match=r"sub-environments \[0\] cannot be reset alone"):
        env.reset_where(np.array([True, False, False, False]))


def test_own_limit_on_a_sync_env_truncates_and_resets_single_rows():
    env = Environment.create(sync(AutoresetMode.NEXT_STEP)(), max_episode_timesteps=2)
    env.reset()
    env.execute(np.zeros(SIZE, np.int64))
    states, terminals, _ = env.execute(np.zeros(SIZE, np.int64))
    assert terminals.tolist() == [2, 2, 2, 2] and states[:, 0].tolist() == [2, 2, 2, 2]
    done = np.array([True, False, True, False])
    assert env.reset_where(done)[:, 0].tolist() == [0, 2, 0, 2]
