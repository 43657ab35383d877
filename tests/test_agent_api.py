import functools
import json

import numpy as np
import pytest
import torch

from forceexp import Agent, Environment, Runner
from forceexp.agents import PPOAgent, RandomAgent
from forceexp.errors import ConfigError, ProtocolError

STATES = {"type": "float", "shape": (4,)}
ACTIONS = {"type": "int", "shape": (), "num_values": 2}


def make(**kwargs):
    return Agent.create(agent="ppo", states=STATES, actions=ACTIONS, **{"device": "cpu", **kwargs})


@pytest.mark.parametrize("form", ["name", "dict", "json", "yaml", "class", "partial"])
def test_create_accepts_every_form(tmp_path, form):
    spec = {"agent": "ppo", "rollout_length": 16}
    if form == "name":
        agent = Agent.create("ppo", states=STATES, actions=ACTIONS, rollout_length=16)
    elif form == "dict":
        agent = Agent.create(spec, states=STATES, actions=ACTIONS)
    elif form in ("json", "yaml"):
        path = tmp_path / f"ppo.{form}"
        path.write_text(json.dumps(spec))  # JSON is valid YAML
        agent = Agent.create(str(path), states=STATES, actions=ACTIONS)
    elif form == "class":
        agent = Agent.create(PPOAgent, states=STATES, actions=ACTIONS, rollout_length=16)
    else:
        agent = Agent.create(
            functools.partial(PPOAgent, rollout_length=16), states=STATES, actions=ACTIONS
        )
    assert isinstance(agent, PPOAgent)
    assert agent.rollout_length == 16
    assert agent.spec["agent"] == "ppo" and agent.spec["rollout_length"] == 16


def test_create_from_environment_fills_specs():
    agent = Agent.create("ppo", environment="CartPole-v1")
    assert agent.state_specs["state"].shape == (4,)
    assert agent.action_specs["action"].num_values == 2
    assert agent.max_episode_timesteps == 500


def test_unknown_agent_and_kwarg_errors():
    with pytest.raises(ConfigError, match=r"unknown agent 'ppx'; did you mean 'ppo'\?"):
        Agent.create("ppx", states=STATES, actions=ACTIONS)
    with pytest.raises(ConfigError, match="unexpected keyword argument 'learnin_rate'"):
        make(learnin_rate=0.1)
    with pytest.raises(ConfigError, match=r"agent.rollout_length: 0 is invalid"):
        make(rollout_length=0)
    with pytest.raises(ConfigError, match="schedule_timesteps"):
        make(lr_schedule="linear")
    with pytest.raises(ConfigError, match="device"):
        make(device="tpu")


def test_act_returns_structure_mirroring_input():
    agent = make()
    single = agent.act(np.zeros(4), independent=True)
    assert np.ndim(single) == 0 and single in (0, 1)
    batch = agent.act(np.zeros((3, 4)), parallel=[0, 0, 0], independent=True)
    assert batch.shape == (3,)
    named = Agent.create(
        "ppo",
        states={"pos": {"type": "float", "shape": (2,)}, "flag": {"type": "bool"}},
        actions={
            "move": {"type": "int", "num_values": 3},
            "force": {"type": "float", "shape": (2,)},
        },
    )
    out = named.act({"pos": np.zeros(2), "flag": True}, independent=True)
    assert set(out) == {"move", "force"} and out["force"].shape == (2,)


def test_act_observe_protocol_errors():
    agent = make()
    with pytest.raises(ProtocolError, match="have not acted"):
        agent.observe(reward=1.0)
    agent.act(np.zeros(4))
    with pytest.raises(ProtocolError, match="already acted"):
        agent.act(np.zeros(4))
    agent.observe(reward=1.0, terminal=False)
    agent.act(np.zeros(4))
    with pytest.raises(ConfigError, match=r"0, 1 or 2"):
        agent.observe(reward=0.0, terminal=3)


def test_state_errors_name_the_state():
    agent = make()
    with pytest.raises(ConfigError, match=r"states.state: .* is invalid; .* Got shape \(3,\)"):
        agent.act(np.zeros(3), independent=True)
    with pytest.raises(ConfigError, match="unexpected key 'velocity'"):
        agent.act({"state": np.zeros(4), "velocity": 1.0}, independent=True)
    with pytest.raises(ConfigError, match=r"parallel: .* slot indices in \[0, 1\)"):
        agent.act(np.zeros(4), parallel=3)


def test_action_mask_seed_example_never_returns_masked_value():
    agent = Agent.create(
        agent="ppo",
        states={"type": "float", "shape": (10,)},
        actions={"type": "int", "shape": (), "num_actions": 3},
        seed=0,
    )
    for _ in range(300):
        states = {"state": np.random.random_sample(size=(10,)), "action_mask": [True, False, True]}
        assert agent.act(states=states) != 1
        agent.observe(reward=0.0, terminal=False)
    only_one = {"state": np.zeros(10), "action_mask": [False, True, False]}
    assert all(agent.act(only_one, independent=True, deterministic=d) == 1 for d in (True, False))
    with pytest.raises(ConfigError, match="allows no value"):
        agent.act({"state": np.zeros(10), "action_mask": [False] * 3}, independent=True)
    with pytest.raises(ConfigError, match=r"action_mask: shape \(2,\) does not match"):
        agent.act({"state": np.zeros(10), "action_mask": [True, False]}, independent=True)


def test_seeded_runs_are_reproducible():
    def returns(seed):
        runner = Runner(
            agent={"agent": "ppo", "seed": seed, "device": "cpu", "rollout_length": 16},
            environment="CartPole-v1",
            num_parallel=2,
            seed=seed,
        )
        runner.run(num_timesteps=600, use_tqdm=False)
        runner.close()
        return runner.episode_returns

    first = returns(3)
    assert first == returns(3)
    assert first != returns(4)


def test_random_and_constant_agents():
    masked = RandomAgent(states=STATES, actions={"type": "int", "num_values": 4}, seed=1)
    picks = {
        int(masked.act({"state": np.zeros(4), "action_mask": [0, 1, 0, 1]}, independent=True))
        for _ in range(50)
    }
    assert picks == {1, 3}
    const = Agent.create(
        "constant",
        states=STATES,
        actions={"type": "float", "shape": (2,), "min_value": -1.0, "max_value": 3.0},
    )
    np.testing.assert_allclose(const.act(np.zeros(4), independent=True), [1.0, 1.0])
    with pytest.raises(ConfigError, match="unknown action"):
        Agent.create("constant", states=STATES, actions={"a": ACTIONS}, action_values={"b": 1})


def test_environment_create_forms_and_truncation():
    env = Environment.create(environment="gym", level="CartPole-v1", max_episode_timesteps=5)
    env.reset(seed=0)
    terminal, steps = 0, 0
    while not terminal:
        _, terminal, _ = env.execute(steps % 2)
        steps += 1
    assert (steps, terminal) == (5, 2) or terminal == 1
    with pytest.raises(ConfigError, match="unknown environment 'CartPol-v1'"):
        Environment.create("CartPol-v1")
    with pytest.raises(ConfigError, match="needs level"):
        Environment.create("gym")


def test_runner_counts_episodes_and_refuses_instances_for_parallel():
    runner = Runner(agent="random", environment="CartPole-v1", num_parallel=3, seed=0)
    runner.run(num_episodes=7, use_tqdm=False)
    assert 7 <= runner.episodes <= 9
    assert len(runner.episode_returns) == runner.episodes == len(runner.episode_seconds)
    assert sum(runner.episode_timesteps) == runner.timesteps
    result = runner.evaluate(num_episodes=3)
    assert result["episodes"] == 3 and result["return_mean"] > 0
    runner.close()
    with pytest.raises(ConfigError, match="cannot be copied"):
        Runner(agent="random", environment=Environment.create("CartPole-v1"), num_parallel=2)


def test_auto_device_keeps_small_networks_on_the_cpu():

    from forceexp.agents.agent import resolve_device
    from forceexp.specs import parse_specs

    vector = parse_specs(dict(type="float", shape=(4,)), "state")
    image = parse_specs(dict(type="float", shape=(84, 84, 4)), "state")
    assert resolve_device("auto", vector).type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto", image).type == expected


def test_torch_threads_auto_sets_one_thread_for_small_cpu_networks_only():

    torch.set_num_threads(2)
    make(torch_threads=None)
    assert torch.get_num_threads() == 2  # None leaves torch alone
    agent = make()  # default "auto", a 4-value state on the CPU
    assert agent.spec["torch_threads"] == "auto" and torch.get_num_threads() == 1
    torch.set_num_threads(2)
    image = {"type": "float", "shape": (32, 32, 3)}
    Agent.create(agent="random", states=image, actions=ACTIONS, device="cpu")
    assert torch.get_num_threads() == 2  # image-like states keep torch's pool
    make(torch_threads=3)
    assert torch.get_num_threads() == 3
    with pytest.raises(ConfigError, match=r"torch_threads.*'auto', an int >= 1 or None"):
        make(torch_threads=0)


def test_train_config_passes_torch_threads_to_the_agent(compose_cfg):

    from forceexp.experiment import build_agent

    cfg = compose_cfg("torch_threads=2")
    env = Environment.create("CartPole-v1")
    agent = build_agent(cfg, env, 1)
    assert agent.spec["torch_threads"] == 2 and torch.get_num_threads() == 2
    assert compose_cfg().torch_threads == "auto"
    env.close()
