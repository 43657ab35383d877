"""Action types, named actions, masks, the Beta head, and Gymnasium action/observation spaces."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from forceexp import Agent, Environment, Runner
from forceexp.core.distributions import BetaHead, make_head
from forceexp.environments.spaces import SpaceMap
from forceexp.environments.testing import MaskedChoiceEnvironment
from forceexp.errors import ConfigError
from forceexp.specs import parse_spec

SEED_STATES = {"type": "float", "shape": (10,)}
SEED_ACTIONS = {"type": "int", "shape": (), "num_actions": 3}


def seed_agent(**kwargs):
    return Agent.create(
        agent="ppo", states=SEED_STATES, actions=SEED_ACTIONS, seed=0, device="cpu", **kwargs
    )


# ---------------------------------------------------------------------------- the seed example
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("independent", [False, True])
def test_seed_example_never_returns_the_masked_action(deterministic, independent):
    agent = seed_agent(rollout_length=100, epochs=2)
    rng = np.random.default_rng(0)
    for _ in range(1000):
        states = {"state": rng.random(10), "action_mask": [True, False, True]}
        action = agent.act(states=states, independent=independent, deterministic=deterministic)
        assert action != 1
        if not independent:
            agent.observe(reward=float(action == 2), terminal=False)
    if not independent:
        assert agent.updates > 0  # the masked rows went through PPO updates too
    only_one = {"state": rng.random(10), "action_mask": [False, True, False]}
    for _ in range(20):
        assert agent.act(only_one, independent=True, deterministic=deterministic) == 1


def test_batched_masks_apply_per_row():
    agent = seed_agent()
    masks = np.array([[True, False, False], [False, True, False], [False, False, True]] * 20)
    states = {"state": np.random.random((60, 10)), "action_mask": masks}
    for deterministic in (False, True):
        actions = agent.act(
            states, parallel=[0] * 60, independent=True, deterministic=deterministic
        )
        np.testing.assert_array_equal(actions, masks.argmax(1))
    as_list = [{"state": np.zeros(10), "action_mask": row} for row in masks[:3]]
    np.testing.assert_array_equal(
        agent.act(as_list, parallel=[0, 0, 0], independent=True), [0, 1, 2]
    )


def test_masked_values_have_zero_probability_and_int_masks_are_accepted():
    agent = seed_agent()
    states = {"state": torch.zeros(4, 10)}
    mask = torch.tensor([[True, False, True]] * 4)
    features = agent.policy.network(states)
    dist = agent.policy.distributions(features, {"action": mask})["action"]
    probs = dist.parameters()["probabilities"]
    assert (probs[:, 1] == 0).all() and torch.allclose(probs.sum(-1), torch.ones(4))
    assert torch.isfinite(dist.entropy()).all()
    assert agent.act({"state": np.zeros(10), "action_mask": [0, 0, 1]}, independent=True) == 2


# ---------------------------------------------------------------------------- mask errors
def test_mask_errors_name_the_action_and_shapes():
    agent = seed_agent()
    state = np.zeros(10)
    with pytest.raises(ConfigError, match=r"states.action_mask: shape \(2,\) .* = \(3,\)"):
        agent.act({"state": state, "action_mask": [True, False]}, independent=True)
    with pytest.raises(ConfigError, match=r"states.action_mask: .*boolean mask"):
        agent.act({"state": state, "action_mask": ["True", "False", "True"]}, independent=True)
    with pytest.raises(ConfigError, match=r"states.action_mask: 'float64' .*boolean mask"):
        agent.act({"state": state, "action_mask": [0.5, 1.0, 1.0]}, independent=True)
    batch = {"state": np.zeros((3, 10)), "action_mask": [[1, 0, 0], [0, 0, 0], [0, 1, 1]]}
    with pytest.raises(
        ConfigError, match=r"allows no value for action 'action' in batch row\(s\) \[1\]"
    ):
        agent.act(batch, parallel=[0, 0, 0], independent=True)
    with pytest.raises(ConfigError, match=r"shape \(3, 2\) .* with a batch axis"):
        agent.act(
            {"state": np.zeros((3, 10)), "action_mask": np.ones((3, 2), bool)},
            parallel=[0, 0, 0],
            independent=True,
        )
    with pytest.raises(ConfigError, match=r"states: missing \['state'\]"):
        agent.act({"action_mask": [True, True, True]}, independent=True)


def test_mask_keys_for_unknown_or_float_actions_are_rejected():
    agent = Agent.create(
        "ppo",
        states=SEED_STATES,
        actions={
            "move": {"type": "int", "num_values": 3},
            "force": {"type": "float", "shape": (2,)},
        },
        device="cpu",
    )
    base = {"state": np.zeros(10)}
    with pytest.raises(ConfigError, match=r"unexpected key 'jump_mask'; valid keys: .*'move_mask'"):
        agent.act({**base, "jump_mask": [True]}, independent=True)
    with pytest.raises(
        ConfigError, match=r"states.force_mask: .*int actions only; 'force' is float"
    ):
        agent.act({**base, "force_mask": [True, True]}, independent=True)
    with pytest.raises(ConfigError, match=r"states.move_mask: shape \(2,\) .* = \(3,\)"):
        agent.act({**base, "move_mask": [True, True]}, independent=True)
    single_float = Agent.create(
        "ppo", states=SEED_STATES, actions={"type": "float", "shape": ()}, device="cpu"
    )
    with pytest.raises(ConfigError, match=r"'action' is float"):
        single_float.act({"state": np.zeros(10), "action_mask": [True]}, independent=True)


# ---------------------------------------------------------------------------- every action type
HEAD_CASES = {
    "int (3,) x 4": ({"type": "int", "shape": (3,), "num_values": 4}, "clip", torch.int64),
    "float unbounded": ({"type": "float", "shape": (2,)}, "clip", torch.float32),
    "float clip": ({"type": "float", "shape": (2,), "min_value": -2, "max_value": 1}, "clip", None),
    "float squash": (
        {"type": "float", "shape": (2,), "min_value": -2, "max_value": 1},
        "squash",
        None,
    ),
    "float beta": ({"type": "float", "shape": (2,), "min_value": -2, "max_value": 1}, "beta", None),
    "bool (2, 2)": ({"type": "bool", "shape": (2, 2)}, "clip", torch.bool),
    "int scalar": ({"type": "int", "num_values": 5}, "clip", torch.int64),
}


@pytest.mark.parametrize("case", list(HEAD_CASES))
def test_every_action_type_samples_with_shapes_log_prob_and_entropy(case):
    raw, bounding, dtype = HEAD_CASES[case]
    spec = parse_spec(raw, "actions")
    head = make_head("a", 8, spec, bounding)
    dist = head(torch.randn(5, 8))
    for deterministic in (False, True):
        sample = dist.sample(deterministic)
        assert sample.shape == (5, *spec.shape)
        if dtype is not None:
            assert sample.dtype == dtype
        assert dist.log_prob(sample).shape == (5,)
        assert torch.isfinite(dist.log_prob(sample)).all()
        env_action = head.to_env(sample)
        if spec.is_bounded:
            assert (env_action >= -2).all() and (env_action <= 1).all()
    assert dist.entropy().shape == (5,)


def test_dict_of_mixed_actions_round_trips_through_act_observe_update():
    actions = {
        "move": {"type": "int", "shape": (2,), "num_values": 3},
        "force": {"type": "float", "shape": (2,), "min_value": -1.0, "max_value": 1.0},
        "fire": {"type": "bool"},
        "gear": {"type": "float", "shape": (), "min_value": 0.0, "max_value": 5.0},
    }
    agent = Agent.create(
        "ppo",
        states=SEED_STATES,
        actions=actions,
        rollout_length=8,
        minibatch_size=8,
        epochs=2,
        bounded_actions="beta",
        device="cpu",
        seed=0,
    )
    mask = np.array([[True, False, False], [False, True, True]])
    for step in range(40):
        out = agent.act({"state": np.random.random(10), "move_mask": mask})
        assert set(out) == set(actions)
        assert out["move"].shape == (2,) and out["move"][0] == 0 and out["move"][1] != 0
        assert out["force"].shape == (2,) and (np.abs(out["force"]) <= 1).all()
        assert type(out["fire"]) is bool  # one scalar action: a Python bool
        assert 0.0 <= out["gear"] <= 5.0
        agent.observe(reward=float(out["fire"]), terminal=step % 10 == 9)
    assert agent.updates >= 4
    batch = agent.act(
        {"state": np.zeros((3, 10)), "move_mask": np.stack([mask] * 3)},
        parallel=[0, 0, 0],
        independent=True,
    )
    assert batch["move"].shape == (3, 2) and batch["force"].shape == (3, 2)
    assert batch["fire"].shape == (3,) and batch["gear"].shape == (3,)


# ---------------------------------------------------------------------------- Beta head
def test_beta_log_prob_and_entropy_match_torch_after_rescaling():
    spec = parse_spec({"type": "float", "shape": (3,), "min_value": -2.0, "max_value": 4.0}, "a")
    head = BetaHead(6, spec)
    with torch.no_grad():
        head.linear.weight.normal_()
    features = torch.randn(7, 6)
    dist = head(features)
    raw = dist.sample(False)
    env_action = head.to_env(raw)
    assert (env_action > -2).all() and (env_action < 4).all()
    reference = torch.distributions.Beta(dist.alpha, dist.beta)
    unit = (env_action - head.low) / (head.high - head.low)
    torch.testing.assert_close(dist.log_prob(raw), reference.log_prob(unit).sum(-1))
    torch.testing.assert_close(dist.entropy(), reference.entropy().sum(-1))
    mean = head.to_env(dist.sample(True))
    torch.testing.assert_close(mean, -2 + 6 * reference.mean)
    assert (dist.alpha >= 1).all() and (dist.beta >= 1).all()


def test_beta_head_choice_and_errors():
    bounded = parse_spec({"type": "float", "min_value": 0.0, "max_value": 1.0}, "a")
    unbounded = parse_spec({"type": "float"}, "a")
    assert isinstance(make_head("a", 4, bounded, "beta"), BetaHead)
    assert not isinstance(make_head("a", 4, unbounded, "beta"), BetaHead)  # Gaussian fallback
    with pytest.raises(ConfigError, match="needs a float action with min/max"):
        BetaHead(4, unbounded)
    with pytest.raises(ConfigError, match=r"bounded_actions: 'tanh' is invalid; expected clip"):
        make_head("a", 4, bounded, "tanh")  # type: ignore[arg-type]


def test_ppo_with_beta_acts_within_bounds_on_target_env():
    runner = Runner(
        agent={"agent": "ppo", "bounded_actions": "beta", "rollout_length": 16, "device": "cpu"},
        environment="target",
        num_parallel=2,
        seed=0,
    )
    runner.run(num_timesteps=200, use_tqdm=False)
    assert runner.updates > 0
    for deterministic in (False, True):
        batch = runner.agent.act(
            np.linspace(-1, 1, 50, dtype=np.float32)[:, None],
            parallel=[0] * 50,
            independent=True,
            deterministic=deterministic,
        )
        assert batch.shape == (50, 1) and (batch >= -1).all() and (batch <= 1).all()
    runner.close()


# ---------------------------------------------------------------------------- Gymnasium spaces
SPACES = {
    "discrete start 1": spaces.Discrete(3, start=1),
    "discrete start -2": spaces.Discrete(4, start=-2),
    "multidiscrete equal": spaces.MultiDiscrete([3, 3], start=[1, 1]),
    "multidiscrete unequal": spaces.MultiDiscrete([2, 5]),
    "box float": spaces.Box(-2.0, np.array([1.0, 3.0], np.float32), (2,)),
    "box int": spaces.Box(-1, 2, (2,), dtype=np.int64),
    "multibinary": spaces.MultiBinary(3),
    "dict": spaces.Dict(
        {"steer": spaces.Box(-1.0, 1.0, (1,)), "gear": spaces.Discrete(3, start=1)}
    ),
    "tuple": spaces.Tuple((spaces.Discrete(2), spaces.MultiBinary(2), spaces.Box(0.0, 1.0, ()))),
    "nested": spaces.Dict(
        {
            "arm": spaces.Tuple((spaces.Discrete(2), spaces.MultiDiscrete([2, 3]))),
            "on": spaces.MultiBinary(1),
        }
    ),
}


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", list(SPACES))
def test_space_values_round_trip(name):
    space = SPACES[name]
    space.seed(0)
    mapping = SpaceMap(space, "action")
    specs = mapping.specs()
    for _ in range(20):
        value = space.sample()
        flat = mapping.flatten(value)
        named = {"action": flat} if mapping.single else flat
        for key, spec in {"action": specs}.items() if mapping.single else specs.items():
            parsed = parse_spec(spec, key)
            arr = np.asarray(named[key])
            assert arr.shape == parsed.shape
            if parsed.num_values is not None:
                assert arr.min() >= 0 and arr.max() < parsed.num_values
        back = mapping.unflatten(flat)
        assert space.contains(back), (value, back)
        assert _equal(back, value)


def test_space_specs_and_names():
    assert SpaceMap(SPACES["discrete start 1"], "action").specs()["num_values"] == 3
    assert SpaceMap(SPACES["box int"], "action").specs()["num_values"] == 4
    assert list(SpaceMap(SPACES["multidiscrete unequal"], "action").specs()) == [
        "action_0",
        "action_1",
    ]
    assert list(SpaceMap(SPACES["tuple"], "action").specs()) == [
        "action_0",
        "action_1",
        "action_2",
    ]
    assert list(SpaceMap(SPACES["nested"], "action").specs()) == [
        "arm_0",
        "arm_1_0",
        "arm_1_1",
        "on",
    ]


def test_space_map_errors():
    with pytest.raises(ConfigError, match=r"Text.*a Box, Discrete"):
        SpaceMap(spaces.Text(4), "state")
    with pytest.raises(ConfigError, match="both map to 'a_b'"):
        SpaceMap(
            spaces.Dict({"a": spaces.Dict({"b": spaces.Discrete(2)}), "a_b": spaces.Discrete(2)}),
            "x",
        )
    mapping = SpaceMap(SPACES["dict"], "action")
    with pytest.raises(
        ConfigError, match=r"actions: 'int' is invalid; expected a dict with keys \['gear'"
    ):
        mapping.unflatten(3)
    with pytest.raises(ConfigError, match=r"actions: missing \['gear'\]"):
        mapping.unflatten({"steer": np.zeros(1)})
    with pytest.raises(ConfigError, match=r"cannot map a list mask onto actions"):
        mapping.masks([1, 0, 1])
    with pytest.raises(ConfigError, match=r"1 masks for actions \['action_0'"):
        SpaceMap(SPACES["multidiscrete unequal"], "action").masks([[1, 1]])
    with pytest.raises(ConfigError, match=r"action_mask: 'float64' .*boolean"):
        SpaceMap(spaces.Discrete(3), "action").masks([0.5, 1.0, 1.0])


class SpaceEnv(gym.Env):
    """A gymnasium env that checks every action against its action space."""

    def __init__(self, action_space, observation_space, mask_in=None, horizon=5):
        self.action_space, self.observation_space = action_space, observation_space
        self.mask_in, self.horizon, self.t = mask_in, horizon, 0
        self.actions_seen = []

    def _mask(self):
        return np.array([1, 0, 1], dtype=np.int8)  # value start+1 is never allowed

    def _obs(self):
        obs = self.observation_space.sample()
        if self.mask_in == "obs":
            obs["action_mask"] = self._mask()
        return obs, ({"action_mask": self._mask()} if self.mask_in == "info" else {})

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.t = 0
        return self._obs()

    def step(self, action):
        assert self.action_space.contains(action), action
        self.actions_seen.append(action)
        self.t += 1
        obs, info = self._obs()
        return obs, 0.0, False, self.t >= self.horizon, info


OBSERVATION = spaces.Box(-1.0, 1.0, (3,))


@pytest.mark.parametrize("name", list(SPACES))
def test_gymnasium_env_steps_with_agent_actions(name):
    gym_env = SpaceEnv(SPACES[name], SPACES["tuple"] if name == "dict" else OBSERVATION)
    env = Environment.create(gym_env)
    for agent_name in ("ppo", "random"):
        agent = Agent.create(agent_name, environment=env, device="cpu", seed=0)
        states = env.reset(seed=0)
        terminal = 0
        while not terminal:
            states, terminal, _ = env.execute(agent.act(states, independent=True))
        assert terminal == 2
    assert len(gym_env.actions_seen) == 10


@pytest.mark.parametrize("where", ["info", "obs"])
def test_gymnasium_action_mask_is_passed_on(where):
    observation = spaces.Box(-1.0, 1.0, (3,))
    if where == "obs":
        observation = spaces.Dict(
            {"observation": observation, "action_mask": spaces.MultiBinary(3)}
        )
    gym_env = SpaceEnv(spaces.Discrete(3, start=1), observation, mask_in=where, horizon=200)
    env = Environment.create(gym_env)
    expected_states = {"type": "float", "shape": [3], "min_value": -1.0, "max_value": 1.0}
    assert env.states() == (
        expected_states if where == "info" else {"observation": expected_states}
    )
    states = env.reset(seed=0)
    assert states["action_mask"].dtype == np.bool_
    agent = Agent.create("ppo", environment=env, device="cpu", seed=0)
    terminal = 0
    while not terminal:
        states, terminal, _ = env.execute(agent.act(states, independent=True))
    assert sorted(set(gym_env.actions_seen)) == [1, 3]  # 2 is masked; start=1 is added back


def test_taxi_info_masks_prevent_illegal_moves_in_runner():
    env = Environment.create("Taxi-v4")
    assert env.reset(seed=0)["action_mask"].shape == (6,)
    env.close()
    runner = Runner(
        agent={"agent": "ppo", "device": "cpu", "rollout_length": 16},
        environment="Taxi-v4",
        num_parallel=2,
        seed=0,
        max_episode_timesteps=40,
    )
    runner.run(num_timesteps=320, use_tqdm=False)
    assert runner.updates > 0
    # illegal pickup/drop-off costs -10; with masks every step costs exactly -1 (or +20)
    for ret, length in zip(runner.episode_returns, runner.episode_timesteps, strict=True):
        assert ret >= -length
    runner.close()


def test_gymnasium_masks_for_split_and_equal_multidiscrete():
    split = SpaceMap(spaces.MultiDiscrete([2, 3]), "action")
    masks = split.masks((np.array([1, 0]), np.array([0, 1, 1])))
    assert list(masks) == ["action_0_mask", "action_1_mask"]
    np.testing.assert_array_equal(masks["action_1_mask"], [False, True, True])
    equal = SpaceMap(spaces.MultiDiscrete([3, 3]), "action")
    stacked = equal.masks((np.array([1, 0, 0]), np.array([0, 1, 1])))["action_mask"]
    assert stacked.shape == (2, 3) and stacked.dtype == np.bool_
    named = SpaceMap(SPACES["dict"], "action").masks({"gear": [1, 1, 0]})
    np.testing.assert_array_equal(named["gear_mask"], [True, True, False])


# ---------------------------------------------------------------------------- masked env learning
def test_masked_choice_environment_contract():
    env = MaskedChoiceEnvironment(num_values=5, num_valid=2, episode_length=3, seed=1)
    states = env.reset()
    assert states["action_mask"].sum() == 2
    np.testing.assert_array_equal(states["action_mask"], states["state"] > 0)
    move = int(np.flatnonzero(states["action_mask"])[0])
    _, terminal, reward = env.execute(move)
    assert terminal == 0 and 0.2 <= reward <= 1.0
    states, terminal, reward = env.execute(int(np.flatnonzero(~states["action_mask"])[0]))
    assert (terminal, reward) == (1, -1.0)
    unmasked = MaskedChoiceEnvironment(masks=False)
    assert isinstance(unmasked.reset(seed=0), np.ndarray)
    with pytest.raises(ConfigError, match=r"num_valid: 0 is invalid; expected an int in \[1"):
        MaskedChoiceEnvironment(num_valid=0)


def _masked_choice_run(masks: bool) -> tuple[float, float, Runner]:
    runner = Runner(
        agent={
            "agent": "ppo",
            "seed": 0,
            "device": "cpu",
            "rollout_length": 64,
            "minibatch_size": 64,
            "epochs": 4,
            "learning_rate": 3e-3,
            "discount": 0.5,
        },
        environment={"environment": "masked_choice", "masks": masks},
        num_parallel=4,
        seed=0,
    )
    runner.run(num_timesteps=2000, use_tqdm=False)
    evaluation = runner.evaluate(num_episodes=20, deterministic=False)
    runner.close()
    return float(np.mean(runner.episode_returns)), evaluation["return_mean"], runner


@pytest.mark.slow
def test_masks_make_learning_clearly_faster():
    masked_train, masked_eval, masked = _masked_choice_run(True)
    plain_train, plain_eval, _ = _masked_choice_run(False)
    assert all(length == 10 for length in masked.episode_timesteps)  # never an invalid move
    assert masked_train > plain_train + 3.0, (masked_train, plain_train)
    assert masked_eval > plain_eval, (masked_eval, plain_eval)
    assert np.mean(masked.episode_returns[-20:]) > 6.5  # above random-among-valid (about 6)


# ---------------------------------------------------------------------------- configs
def test_masked_choice_config_composes(compose_cfg):
    from forceexp.config import build

    cfg = compose_cfg("env=masked_choice")
    env = build(cfg.env)()
    assert env.actions() == {"type": "int", "shape": [], "num_values": 10}
    assert "action_mask" in env.reset(seed=0)
    env.close()


@pytest.mark.parametrize("name", ["lunarlander", "lunarlander_continuous"])
def test_lunarlander_configs_compose_and_step(compose_cfg, name):
    pytest.importorskip("Box2D")
    from omegaconf import OmegaConf

    from forceexp.config import build

    cfg = compose_cfg("agent=ppo", f"env={name}")  # picks up tuning/ppo_<env>.yaml
    env = build(OmegaConf.to_container(cfg.env, resolve=True))()
    agent_kwargs = OmegaConf.to_container(cfg.agent, resolve=True)
    agent = Agent.create(build({**agent_kwargs, "device": "cpu"}), environment=env)
    if name == "lunarlander":
        assert env.actions()["num_values"] == 4
    else:
        assert env.actions() == {
            "type": "float",
            "shape": [2],
            "min_value": -1.0,
            "max_value": 1.0,
        }
        assert type(agent.policy.heads["action"]).__name__ == "GaussianHead"
    states = env.reset(seed=0)
    for _ in range(5):
        states, terminal, _ = env.execute(agent.act(states, independent=True))
        if terminal:
            break
    env.close()


def test_rows_without_a_mask_are_stored_as_all_allowed():
    import torch

    agent = Agent.create(
        "ppo",
        states={"type": "float", "shape": (2,)},
        actions={"type": "int", "num_values": 3},
        device="cpu",
        seed=0,
    )
    agent.act({"state": np.zeros(2), "action_mask": [True, False, False]})
    agent.observe(reward=0.0)
    agent.act(np.zeros(2))  # no mask on this step
    agent.observe(reward=0.0)
    stored = agent.buffer.masks["action"][:2, 0]
    assert torch.equal(stored, torch.tensor([[True, False, False], [True, True, True]]))
