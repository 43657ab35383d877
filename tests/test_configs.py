"""Every option of every config group composes and instantiates; YAML keys match signatures."""

import inspect
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from forceexp import Agent
from forceexp.config import build, build_network
from forceexp.errors import ConfigError
from forceexp.execution.runner import Runner
from forceexp.experiment import network_spec, split_runner
from forceexp.specs import parse_specs

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ["agent", "network", "runner", "env", "saver", "summarizer", "recorder", "tracker"]
OPTIONS = [f"{g}/{p.stem}" for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


def _target(node):
    from hydra.utils import get_object

    return get_object(node["_target_"])


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_composes_and_instantiates(compose_cfg, option):
    group, name = option.split("/")
    cfg = compose_cfg(f"{group}={name}")
    node = cfg[group]
    if not node:  # a `none` option
        return
    container = OmegaConf.to_container(node, resolve=True)
    if "_target_" not in container:
        return  # plain spec dicts (network, saver, ...) are checked by the agent tests
    if group == "runner":
        container, _ = split_runner(node)
    target = _target(container)
    params = inspect.signature(target).parameters
    accepted = set(params)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        accepted |= set(OmegaConf.to_container(node))  # forwarded; checked by instantiation below
    if group == "runner":
        accepted |= set(inspect.signature(Runner.run).parameters)
    unknown = set(OmegaConf.to_container(node)) - accepted - {"_target_", "_partial_"}
    assert not unknown, f"{option}: keys {unknown} are not parameters of {container['_target_']}"
    built = build(container)
    assert callable(built)
    if group == "env":
        env = built()  # unknown keyword arguments fail here
        assert env.states() and env.actions()
        env.close()


AGENT_OPTIONS = sorted((p.stem for p in (CONF / "agent").glob("*.yaml")), key=len, reverse=True)


@pytest.mark.parametrize("tuning", sorted(p.stem for p in (CONF / "tuning").glob("*.yaml")))
def test_tuning_files_compose(compose_cfg, tuning):
    """``tuning/<agent>_<env>.yaml`` is picked up by ``agent=<agent> env=<env>`` and builds."""
    agent = next(a for a in AGENT_OPTIONS if tuning.startswith(f"{a}_"))
    env = tuning[len(agent) + 1 :]
    assert (CONF / "env" / f"{env}.yaml").exists(), f"{tuning}: no env option {env!r}"
    cfg = compose_cfg(f"agent={agent}", f"env={env}")
    from forceexp.agents import AGENTS

    assert _target(cfg.agent) is AGENTS.get(agent)
    tuned = OmegaConf.to_container(OmegaConf.load(CONF / "tuning" / f"{tuning}.yaml"))
    assert _merged(OmegaConf.to_container(cfg.agent), tuned.get("agent", {})), tuning


def _merged(actual: object, expected: object) -> bool:
    """Whether every leaf of ``expected`` has the same value in ``actual``."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and _merged(actual[key], value) for key, value in expected.items()
        )
    return actual == expected


def test_train_with_hydra_config_on_identity(compose_cfg):
    from forceexp.experiment import train

    cfg = compose_cfg("env=identity", "runner.num_timesteps=512", "runner.num_parallel=2")
    results = train(cfg)
    assert results["timesteps"] == 512
    for key in (
        "eval_return_mean",
        "eval_return_std",
        "episodes",
        "wall_seconds",
        "steps_per_second",
    ):
        assert key in results


def test_build_refuses_targets_outside_the_allow_list():
    with pytest.raises(ConfigError, match=r"cfg._target_: 'os.system' is invalid"):
        build({"_target_": "os.system", "command": "true"})


LEARNING_AGENTS = [p.stem for p in sorted((CONF / "agent").glob("*.yaml"))]


@pytest.mark.parametrize("option", LEARNING_AGENTS)
def test_agent_configs_expose_every_hyperparameter(compose_cfg, option):
    """Every agent argument can be overridden from the command line (``agent.<key>=...``)."""
    filled_in = {"states", "actions", "max_episode_timesteps", "parallel_interactions"}
    filled_in |= {"network", "policy", "saver", "summarizer", "recorder"}  # groups / alias
    node = compose_cfg(f"agent={option}").agent
    target = _target(node)
    params: set[str] = set()
    for cls in target.__mro__:  # a variant's __init__(*, flag, **kwargs) forwards to its base
        if "__init__" not in vars(cls):
            continue
        signature = inspect.signature(cls.__init__).parameters
        params |= {name for name, p in signature.items() if p.kind is not p.VAR_KEYWORD}
        if all(p.kind is not p.VAR_KEYWORD for p in signature.values()):
            break
    params.discard("self")
    keys = set(OmegaConf.to_container(node))
    assert params - filled_in - keys == set()


def test_ppo_fast_update_overrides(compose_cfg):
    assert compose_cfg("agent.fast_update=false").agent.fast_update is False


EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiments_compose_over_their_tuning(compose_cfg, experiment):
    """``experiment=<name>`` picks its agent and env, and their tuning file still applies."""
    assert len(EXPERIMENTS) >= 3
    cfg = compose_cfg(f"experiment={experiment}")
    assert cfg.task_name == experiment
    assert cfg.evaluation.frequency >= 1
    delta = OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml")
    picks = dict(next(iter(item.items())) for item in delta.defaults)
    agent, env = picks["override /agent"], picks["override /env"]
    tuning = OmegaConf.to_container(OmegaConf.load(CONF / "tuning" / f"{agent}_{env}.yaml"))
    assert _merged(OmegaConf.to_container(cfg.agent), tuning.get("agent", {}))
    assert callable(build(cfg.agent)) and callable(build(cfg.env))


def test_another_network_ignores_a_tunings_auto_settings(compose_cfg, caplog):
    """`agent=dqn network=lstm env=cartpole`: the DQN tuning's size/activation/init are for
    the auto network; the chosen LSTM network is built as written, and the log says so."""
    cfg = compose_cfg("agent=dqn", "network=lstm", "env=cartpole")
    assert cfg.network.size == 256  # merged in by conf/tuning/dqn_cartpole.yaml
    with caplog.at_level("WARNING", logger="forceexp.experiment"):
        spec = network_spec(cfg)
    assert spec["type"] == "layered" and "size" not in spec and "init" not in spec
    assert "the 'layered' network ignores them" in caplog.text
    states, actions = dict(type="float", shape=(4,)), dict(type="int", num_values=2)
    agent = Agent.create("dqn", states=states, actions=actions, network=spec)
    assert isinstance(agent.act(states=np.zeros(4, np.float32), independent=True), int)
    assert network_spec(compose_cfg("agent=dqn", "env=cartpole"))["size"] == 256


def test_unknown_network_argument_is_named():
    with pytest.raises(ConfigError, match=r"network.size: unknown argument of LayeredNetwork"):
        build_network(
            dict(type="layered", layers=[dict(type="dense", size=8)], size=3),
            parse_specs(dict(type="float", shape=(4,)), "state"),
        )
