"""Tensorforce's agent argument names are aliases of ours, with their units converted."""

import json
import math
from pathlib import Path

import pytest

from forceexp import Agent, Environment, Runner
from forceexp.agents.aliases import AGENT_ALIASES, COMMON
from forceexp.errors import ConfigError

DATA = Path(__file__).parent / "data" / "tensorforce"
STATES = {"type": "float", "shape": (4,)}
ACTIONS = {"type": "int", "num_values": 2}


def ppo(**kwargs):
    base = {"states": STATES, "actions": ACTIONS, "max_episode_timesteps": 100, "device": "cpu"}
    return Agent.create(agent="ppo", **{**base, **kwargs})


@pytest.mark.parametrize("name", ["ppo.json", "ppo1.json"])
def test_benchmark_configs_load(name):
    environment = Environment.create(environment="gym", level="CartPole-v1")
    agent = Agent.create(agent=str(DATA / name), environment=environment)
    assert agent.rollout_length == 12 * 500  # batch_size episodes x max_episode_timesteps
    assert agent.epochs == 5 and agent.minibatch_size == round(0.9131375430837279 * 6000)
    assert agent.spec["clip_ratio"] == pytest.approx(0.09955676846552193)
    assert agent.spec["entropy_coef"] == pytest.approx(0.0011393096635237982)
    assert agent.discount == pytest.approx(0.9985351346308641)
    assert "batch_size" not in agent.spec  # the saved spec holds our names only


def test_unit_conversions():
    agent = ppo(batch_size=4, parallel_interactions=3, subsampling_fraction=0.5, multi_step=7)
    assert agent.rollout_length == math.ceil(4 * 100 / 3) and agent.epochs == 7
    assert agent.minibatch_size == round(0.5 * agent.rollout_length * 3)
    agent = ppo(update=dict(unit="timesteps", batch_size=64), parallel_interactions=2)
    assert agent.rollout_length == 32
    assert ppo(update=dict(unit="episodes", batch_size=2)).rollout_length == 200
    assert ppo(update=48).rollout_length == 48
    agent = ppo(learning_rate=dict(optimizer="adam", learning_rate=3e-4, multi_step=3))
    assert agent.spec["learning_rate"] == 3e-4 and agent.epochs == 3
    assert ppo(optimizer=dict(type="adam", learning_rate=1e-2)).spec["learning_rate"] == 1e-2
    agent = ppo(
        likelihood_ratio_clipping=0.3, entropy_regularization=0.01, use_beta_distribution=True
    )
    assert agent.spec["clip_ratio"] == 0.3 and agent.spec["entropy_coef"] == 0.01
    assert agent.spec["bounded_actions"] == "beta"
    assert ppo(advantage_processing="linear_normalization").normalize_advantages
    agent = ppo(state_preprocessing="exponential_normalization")
    assert agent.spec["state_preprocessing"] == "exponential_normalization"
    assert agent.preprocessing is not None
    agent = ppo(config=dict(seed=3, device="CPU", buffer_observe=10, name="agent"), tracking=None)
    assert agent.seed == 3 and agent.device.type == "cpu"


def test_aliases_without_meaning_name_the_argument():
    cases = {
        "return_processing": "exponential_normalization",
        "baseline_objective": dict(type="value"),
    }
    for key, value in cases.items():
        with pytest.raises(ConfigError, match=rf"agent\.{key}: .* is invalid; expected None"):
            ppo(**{key: value})
    with pytest.raises(ConfigError, match=r"network.rnn: -1 is invalid; expected False or an int"):
        ppo(network=dict(type="auto", rnn=-1))
    with pytest.raises(ConfigError, match=r"agent.learning_rate.optimizer: 'sgd' is invalid"):
        ppo(learning_rate=dict(optimizer="sgd", learning_rate=0.1))
    with pytest.raises(ConfigError, match=r"unsupported optimizer keys \['clipping_threshold'\]"):
        ppo(learning_rate=dict(optimizer="adam", learning_rate=0.1, clipping_threshold=1))
    with pytest.raises(ConfigError, match=r"agent.subsampling_fraction: 1.5 is invalid"):
        ppo(subsampling_fraction=1.5)
    with pytest.raises(ConfigError, match=r"agent.update_frequency: -1 is invalid"):
        ppo(update_frequency=-1)
    with pytest.raises(ConfigError, match=r"agent.update.unit: 'updates' is invalid"):
        ppo(update=dict(unit="updates", batch_size=3))
    with pytest.raises(ConfigError, match=r"agent.update.start: 10 is invalid"):
        ppo(update=dict(unit="timesteps", batch_size=3, start=10))
    with pytest.raises(ConfigError, match=r"agent.update: unknown keys \['size'\]"):
        ppo(update=dict(batch_size=3, size=1))
    with pytest.raises(ConfigError, match=r"agent.config: unknown key 'colour'"):
        ppo(config=dict(colour="red"))
    with pytest.raises(ConfigError, match=r"enable_int_action_masking: False is invalid"):
        ppo(config=dict(enable_int_action_masking=False))


def test_alias_next_to_its_canonical_name_and_missing_episode_length():
    with pytest.raises(ConfigError, match=r"agent.batch_size: sets rollout_length=1000, but"):
        ppo(batch_size=10, rollout_length=64)
    with pytest.raises(ConfigError, match=r"agent.batch_size: 2 counts episodes"):
        ppo(batch_size=2, max_episode_timesteps=None)
    with pytest.raises(ConfigError, match=r"agent.batch_size: 0 is invalid; expected an int"):
        ppo(batch_size=0)


def test_every_agent_has_the_common_aliases():
    random = Agent.create(agent="random", states=STATES, actions=ACTIONS, config=dict(seed=1))
    assert random.seed == 1
    assert set(COMMON) <= set(AGENT_ALIASES["ppo"]) | set(COMMON)


def test_agent_file_inside_a_dict_and_runner_load_spec(tmp_path):
    spec = {"agent": "ppo", "batch_size": 1, "multi_step": 2}
    (tmp_path / "agent.json").write_text(json.dumps(spec))
    environment = Environment.create(environment="CartPole-v1", max_episode_timesteps=20)
    agent = Agent.create(
        agent=dict(agent=str(tmp_path / "agent.json"), recorder=str(tmp_path / "traces")),
        environment=environment,
    )
    assert agent.epochs == 2 and agent.rollout_length == 20 and agent.observers
    agent.close()
    agent = Agent.create(agent=str(tmp_path / "agent.json"), environment=environment)
    agent.save(directory=tmp_path / "saved", format="numpy")
    runner = Runner(
        agent=dict(directory=str(tmp_path / "saved"), format="numpy"),
        environment="CartPole-v1",
        max_episode_timesteps=20,
    )
    assert runner.agent.epochs == 2
    runner.run(num_episodes=2, use_tqdm=False)
    runner.close()


@pytest.mark.parametrize("name", ["dqn", "double_dqn", "dueling_dqn"])
def test_tensorforce_dqn_arguments(name):
    """Tensorforce's DQN names: update_frequency relative to batch_size, syncs in updates."""
    agent = Agent.create(
        agent=name,
        states={"type": "float", "shape": (4,)},
        actions={"type": "int", "num_values": 2},
        memory=10_000,
        batch_size=32,
        update_frequency=0.25,
        start_updating=None,
        huber_loss=None,
        horizon=3,
        target_sync_frequency=4,
        target_update_weight=0.5,
        learning_rate={"optimizer": "adam", "learning_rate": 1e-3},
        exploration={"type": "linear", "num_steps": 100, "initial_value": 1.0, "final_value": 0.1},
    )
    assert (agent.train_freq, agent.gradient_steps, agent.learning_starts) == (8, 1, 32)
    assert (agent.loss, agent.n_step, agent.tau) == ("mse", 3, 0.5)
    assert agent.target_update_interval == 4 * 8  # updates -> timesteps
    assert agent.learning_rate.value(0, 0, 0) == 1e-3
    assert agent.exploration.value(50, 0, 0) == pytest.approx(0.55)


def test_tensorforce_dpg_arguments():
    agent = Agent.create(
        agent="dpg",
        states={"type": "float", "shape": (3,)},
        actions={"type": "float", "shape": (1,), "min_value": -2.0, "max_value": 2.0},
        memory=10_000,
        batch_size=64,
        update_frequency=1,
        start_updating=None,  # Tensorforce's default: start at batch_size
        critic_network="auto",
        critic_optimizer=1.0,
        use_beta_distribution=True,
        exploration=0.1,
    )
    assert (agent.train_freq, agent.learning_starts, agent.batch_size) == (1, 64, 64)
    assert agent.noise is not None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"huber_loss": 2.0}, r"agent.huber_loss: 2.0 is invalid; expected None"),
        ({"target_sync_frequency": 0}, r"agent.target_sync_frequency: 0 is invalid"),
        ({"update_frequency": -1}, r"agent.update_frequency: -1 is invalid"),
        ({"entropy_regularization": 0.1}, r"agent.entropy_regularization: 0.1 is invalid"),
        ({"learning_rate": {"optimizer": "sgd", "learning_rate": 0.1}}, r"optimizer: 'sgd'"),
    ],
)
def test_tensorforce_dqn_arguments_without_meaning_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Agent.create(
            agent="dqn",
            states={"type": "float", "shape": (4,)},
            actions={"type": "int", "num_values": 2},
            batch_size=32,
            **kwargs,
        )
