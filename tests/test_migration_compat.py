"""Tensorforce's environment-side names: gym state bounding, TensorforceError, util dtypes."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from forceexp import Environment, TensorforceError, util
from forceexp.errors import ConfigError


class Drifting(gymnasium.Env):
    """A float observation with infinite and finite bounds whose values grow past both."""

    observation_space = gymnasium.spaces.Box(
        low=np.array([-np.inf, -2.0, -1e7], np.float32),
        high=np.array([np.inf, 2.0, np.inf], np.float32),
    )
    action_space = gymnasium.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(3, 10.0 * self.t * (1 if action else -1), np.float32)
        return obs, 1.0, self.t >= 3, False, {}


def test_gym_min_max_value_replace_infinite_bounds_and_clip_states() -> None:
    env = Environment.create(environment="gym", level=Drifting(), min_value=-5.0, max_value=5.0)
    spec = env.states()
    assert spec["min_value"] == [-5.0, -2.0, -5.0]  # the finite bound is kept
    assert spec["max_value"] == [5.0, 2.0, 5.0]
    env.reset()
    states, _, _ = env.execute(1)
    assert states.tolist() == [5.0, 2.0, 5.0]
    states, _, _ = env.execute(0)
    assert states.tolist() == [-5.0, -2.0, -5.0]
    env.close()


def test_gym_bounds_by_id_and_spec_file(tmp_path) -> None:
    path = tmp_path / "environment.json"
    path.write_text(
        '{"environment": "gym", "level": "CartPole", "min_value": -3.0, "max_value": 3.0}'
    )
    env = Environment.create(environment=str(path), max_episode_timesteps=10)
    assert env.states()["min_value"][1] == -3.0  # cart velocity: infinite in Gymnasium
    assert env.states()["max_value"][0] == pytest.approx(4.8)  # cart position: finite
    assert np.all(np.abs(env.reset()) <= 4.8)
    env.close()
    unbounded = Environment.create("CartPole-v1")
    assert "min_value" not in unbounded.states()
    unbounded.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(min_value=-1.0), r"min_value/max_value: \(-1.0, None\) is invalid"),
        (dict(min_value=1.0, max_value=-1.0), "min_value < max_value"),
    ],
)
def test_gym_bounds_need_both_values(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        Environment.create(environment="gym", level="CartPole-v1", **kwargs)


def test_tensorforce_error_and_util_dtypes_for_environment_code() -> None:
    error = TensorforceError.value(name="execute", argument="actions", value=7)
    assert isinstance(error, ConfigError)
    assert str(error) == "execute.actions: 7 is invalid; expected a valid value"
    assert util.py_dtype("int") is int and util.py_dtype("bool") is bool
    assert util.np_dtype("float") is np.float32 and util.np_dtype("int") is np.int64
    with pytest.raises(ConfigError, match="dtype: 'double' is invalid"):
        util.np_dtype("double")


def test_a_module_path_names_its_one_environment_class(tmp_path, monkeypatch) -> None:
    package = tmp_path / "tfpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "one_env.py").write_text(
        "import numpy as np\n"
        "from forceexp import Environment\n\n\n"
        "class Base(Environment):\n"
        "    def states(self):\n"
        "        return dict(type='float', shape=(2,))\n\n"
        "    def actions(self):\n"
        "        return dict(type='int', num_values=2)\n\n\n"
        "class Custom(Base):\n"
        "    def reset(self):\n"
        "        return np.zeros(2)\n\n"
        "    def execute(self, actions):\n"
        "        return np.ones(2), True, 1.0\n"
    )
    (package / "two_envs.py").write_text(
        "from forceexp import Environment\n\n\nclass A(Environment):\n    pass\n\n\n"
        "class B(Environment):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    env = Environment.create(environment="tfpkg.one_env", max_episode_timesteps=5)
    assert type(env.environment).__name__ == "Custom"  # Base is only its superclass
    assert env.reset().tolist() == [0.0, 0.0]
    env.close()
    with pytest.raises(ConfigError, match=r"one environment class \(found \['A', 'B'\]\)"):
        Environment.create(environment="tfpkg.two_envs")


def test_a_gone_gymnasium_version_names_the_current_one() -> None:
    with pytest.raises(ConfigError, match="its current version is 'LunarLander-v3'"):
        Environment.create(environment="LunarLander-v2")
