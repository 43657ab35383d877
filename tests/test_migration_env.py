"""Tensorforce programs run unchanged: Python scalar actions and Tensorforce-style environments."""

import gymnasium
import numpy as np
import pytest

from forceexp import Agent, Environment, Runner
from forceexp.errors import ConfigError, ProtocolError


class LegacyEnvironment(Environment):
    """Tensorforce's getting-started environment: ``reset(self)`` without a seed."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def states(self):
        return dict(type="float", shape=(8,))

    def actions(self):
        return dict(type="int", num_values=4)

    def reset(self):
        return np.random.random(size=(8,))

    def execute(self, actions):
        self.seen.append(actions)
        return np.random.random(size=(8,)), np.random.random() < 0.3, np.random.random()


@pytest.mark.parametrize(
    ("actions", "kind"),
    [
        ({"type": "int", "num_values": 3}, int),
        ({"type": "float", "min_value": -1.0, "max_value": 1.0}, float),
        ({"type": "bool"}, bool),
    ],
)
@pytest.mark.parametrize("agent", ["ppo", "random", "constant"])
def test_single_scalar_actions_are_python_scalars(agent, actions, kind):
    created = Agent.create(agent=agent, states={"type": "float", "shape": (2,)}, actions=actions)
    action = created.act(np.zeros(2), independent=True)
    assert type(action) is kind
    named = Agent.create(
        agent=agent, states={"type": "float", "shape": (2,)}, actions={"a": actions, "b": actions}
    )
    out = named.act(np.zeros(2), independent=True)
    assert type(out["a"]) is kind and type(out["b"]) is kind
    batch = created.act(np.zeros((3, 2)), independent=True)  # batched: arrays
    assert isinstance(batch, np.ndarray) and batch.shape == (3,)


def test_legacy_environment_runs_with_the_getting_started_loop():
    environment = Environment.create(environment=LegacyEnvironment, max_episode_timesteps=10)
    agent = Agent.create(agent="ppo", environment=environment, rollout_length=8, seed=0)
    for _ in range(3):
        states, terminal = environment.reset(), False
        while not terminal:
            actions = agent.act(states=states)
            states, terminal, reward = environment.execute(actions=actions)
            agent.observe(terminal=terminal, reward=reward)
    assert all(type(a) is int for a in environment.environment.seen)
    assert environment.reset(seed=3).shape == (8,)  # a seed is not passed on
    runner = Runner(agent=agent, environment=LegacyEnvironment, max_episode_timesteps=10, seed=1)
    runner.run(num_episodes=3, use_tqdm=False)
    assert runner.episodes == 3
    runner.close()


def test_environment_from_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_envs.py").write_text(
        "import numpy as np\n"
        "from forceexp import Environment\n"
        "class Custom(Environment):\n"
        "    def states(self): return dict(type='float', shape=(2,))\n"
        "    def actions(self): return dict(type='int', num_values=2)\n"
        "    def reset(self): return np.zeros(2)\n"
        "    def execute(self, actions): return np.zeros(2), True, 1.0\n"
        "not_an_env = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    environment = Environment.create(environment="my_envs.Custom", max_episode_timesteps=10)
    assert environment.states()["shape"] == [2]
    assert Environment.create(environment="my_envs:Custom").actions()["num_values"] == 2
    with pytest.raises(ConfigError, match=r"'my_envs.not_an_env' is invalid; expected an env"):
        Environment.create(environment="my_envs.not_an_env")
    with pytest.raises(ConfigError, match=r"'no_such_module.Env' is invalid; expected a Gym"):
        Environment.create(environment="no_such_module.Env")
    with pytest.raises(ConfigError, match="unknown environment 'nothing'"):
        Environment.create(environment="nothing")


def test_gym_class_and_unversioned_level():
    from gymnasium.envs.classic_control import CartPoleEnv

    environment = Environment.create(environment=CartPoleEnv, max_episode_timesteps=20)
    assert environment.actions()["num_values"] == 2 and environment.max_episode_timesteps() == 20
    assert isinstance(CartPoleEnv(), gymnasium.Env)
    unversioned = Environment.create(environment="gym", level="CartPole")
    assert unversioned.max_episode_timesteps() == 500  # the newest version, CartPole-v1
    assert Environment.create(environment="CartPole").max_episode_timesteps() == 500


def test_custom_cartpole_single_and_vectorizable_protocol():
    environment = Environment.create(environment="custom_cartpole", max_episode_timesteps=5)
    assert environment.is_vectorizable() and environment.num_actors() == 1
    state = environment.reset()
    assert state.shape == (3,)
    _, terminal, reward = environment.execute(actions=1)
    assert terminal in (0, 1) and reward == 1.0
    parallel, states = environment.reset(num_parallel=3)
    assert parallel.tolist() == [0, 1, 2] and states.shape == (3, 3)
    ended = []
    for _ in range(5):
        acted = parallel
        parallel, states, terminal, reward = environment.execute(actions=np.full(len(acted), 2))
        assert len(terminal) == len(reward) == len(acted) and len(states) == len(parallel)
        ended += terminal[terminal > 0].tolist()
    assert len(parallel) == 0 and len(ended) == 3 and 2 in ended  # truncated at the limit
    with pytest.raises(ProtocolError, match="every parallel episode ended"):
        environment.execute(actions=np.zeros(0))


def test_act_observe_vectorized_example():
    num_parallel = 4
    environment = Environment.create(environment="custom_cartpole", max_episode_timesteps=30)
    agent = Agent.create(
        agent="ppo", environment=environment, parallel_interactions=num_parallel, rollout_length=8
    )
    parallel, states = environment.reset(num_parallel=num_parallel)
    terminal, updates = parallel < 0, 0
    while not terminal.all():
        actions = agent.act(states=states, parallel=parallel)
        next_parallel, states, terminal, reward = environment.execute(actions=actions)
        updates += agent.observe(terminal=terminal, reward=reward, parallel=parallel)
        parallel = next_parallel
    assert agent.episodes == num_parallel and updates >= 1
    parallel, states = environment.reset(num_parallel=2)  # independent batch, default parallel
    actions, internals = agent.act(states=states, internals=[{}, {}], independent=True)
    assert actions.shape == (2,) and internals == [{}, {}]


def test_num_parallel_needs_a_vectorizable_environment():
    environment = Environment.create(environment=LegacyEnvironment)
    assert not environment.is_vectorizable()
    with pytest.raises(ConfigError, match="is not vectorizable"):
        environment.reset(num_parallel=2)
    vectorizable = Environment.create(environment="custom_cartpole")
    with pytest.raises(ConfigError, match=r"reset.num_parallel: 0 is invalid"):
        vectorizable.reset(num_parallel=0)
