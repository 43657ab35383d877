"""LayeredNetwork (register/retrieve, aggregation, errors), AutoNetwork, build_network forms."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from forceexp import Agent, Runner
from forceexp.config import build_network
from forceexp.core.init import orthogonal_
from forceexp.core.networks import AutoNetwork, LayeredNetwork
from forceexp.environments.testing import IdentityEnvironment
from forceexp.errors import ConfigError
from forceexp.specs import parse_specs

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]

SEED_STATES = {
    "observation": {"type": "float", "shape": (16, 16, 3)},
    "attributes": {"type": "int", "shape": (4, 2), "num_values": 5},
}
SEED_POLICY = [
    [
        {"type": "retrieve", "tensors": "observation"},
        {"type": "conv2d", "size": 16},
        {"type": "flatten"},
        {"type": "register", "tensor": "obs-embedding"},
    ],
    [
        {"type": "retrieve", "tensors": ["attributes"]},
        {"type": "embedding", "size": 16},
        {"type": "flatten"},
        {"type": "register", "tensor": "attr-embedding"},
    ],
    [
        {
            "type": "retrieve",
            "tensors": ["obs-embedding", "attr-embedding"],
            "aggregation": "concat",
        },
        {"type": "dense", "size": 32},
    ],
]
TWO = parse_specs(
    {"a": {"type": "float", "shape": (3, 4)}, "b": {"type": "float", "shape": (3, 1)}}, "state"
)


def _states(specs, batch=3):
    out = {}
    for name, spec in specs.items:
        if spec.type == "int":
            out[name] = torch.randint(spec.num_values, (batch, *spec.shape))
        else:
            out[name] = torch.randn(batch, *spec.shape)
    return out


def _check(network, specs):
    out = network(_states(specs))
    assert out.shape == (3, network.output_size)
    return out


def test_seed_network_builds_and_forwards():
    specs = parse_specs(SEED_STATES, "state")
    network = build_network(SEED_POLICY, specs)
    assert network.output_size == 32
    _check(network, specs)
    summary = network.summary()
    assert "network[1][1]" in summary
    assert "(4, 2, 16)" in summary
    assert "total parameters" in summary


def test_sequential_list_single_state():
    specs = parse_specs({"type": "float", "shape": (8,)}, "state")
    network = build_network([{"type": "dense", "size": 16}, "flatten"], specs)
    assert network.output_size == 16
    _check(network, specs)


def test_running_tensor_flows_into_next_list():
    specs = parse_specs({"type": "float", "shape": (8,)}, "state")
    network = build_network(
        [[{"type": "dense", "size": 5}], [{"type": "linear", "size": 2}]], specs
    )
    assert network.output_size == 2
    _check(network, specs)


@pytest.mark.parametrize(
    ("aggregation", "axis", "shape"),
    [
        ("concat", 1, (3, 5)),
        ("concat", -1, (3, 5)),
        ("sum", 0, (3, 4)),
        ("product", 0, (3, 4)),
    ],
)
def test_aggregations_broadcast_and_concat(aggregation, axis, shape):
    layers = [
        [{"type": "retrieve", "tensors": ["a", "b"], "aggregation": aggregation, "axis": axis}]
    ]
    network = LayeredNetwork(TWO, layers)
    assert network.output_spec.shape == shape
    states = _states(TWO)
    out = network(states)
    a, b = states["a"], states["b"]
    expected = {"concat": torch.cat([a, b], 2), "sum": a + b, "product": a * b}[aggregation]
    assert torch.allclose(out, expected.reshape(3, -1))


@pytest.mark.parametrize(("axis", "shape"), [(0, (2, 3, 4)), (1, (3, 2, 4)), (-1, (3, 4, 2))])
def test_stack_aggregation(axis, shape):
    specs = parse_specs(
        {"a": {"type": "float", "shape": (3, 4)}, "b": {"type": "float", "shape": (3, 4)}},
        "state",
    )
    network = LayeredNetwork(
        specs, [{"type": "retrieve", "tensors": ["a", "b"], "aggregation": "stack", "axis": axis}]
    )
    assert network.output_spec.shape == shape
    states = _states(specs)
    out = network(states)
    assert torch.allclose(out, torch.stack([states["a"], states["b"]], axis % 3 + 1).flatten(1))


def _retrieve(tensors, **kwargs):
    return {"type": "retrieve", "tensors": tensors, **kwargs}


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        ([[_retrieve("c")]], r"network\[0\]\[0\]\.tensors: unknown tensor 'c'; .*Valid: a, b"),
        (
            [
                [_retrieve("a"), {"type": "register", "tensor": "x"}],
                [_retrieve("b"), {"type": "register", "tensor": "x"}],
            ],
            r"network\[1\]\[1\]: tensor 'x' is registered twice \(first by network\[0\]\[1\]\)",
        ),
        (
            [[_retrieve("a"), {"type": "register", "tensor": "b"}]],
            r"network\[0\]\[1\]: tensor 'b' is registered twice \(first by states.b\)",
        ),
        (
            [[{"type": "dense", "size": 4}]],
            r"network\[0\]: the network has several states \(a, b\) and branch network\[0\] "
            r"does not start with retrieve",
        ),
        (
            [{"type": "flatten"}],
            r"network: the network has several states \(a, b\) and branch network does not start",
        ),
        (
            [[_retrieve(["a", "b"], aggregation="stack")]],
            r"network\[0\]\[0\]: stack over mismatched shapes: a \(3, 4\), b \(3, 1\)",
        ),
        (
            [[_retrieve(["a", "b"], aggregation="concat", axis=0)]],
            r"network\[0\]\[0\]: concat on axis 0 over mismatched shapes: a \(3, 4\), b \(3, 1\)",
        ),
        (
            [[_retrieve(["a", "b"], aggregation="concat", axis=2)]],
            r"network\[0\]\[0\]\.axis: 2 is out of range for concat of rank 2",
        ),
        (
            [[_retrieve(["a", "b"], aggregation="mean")]],
            r"network\[0\]\[0\]\.aggregation: 'mean' is invalid",
        ),
        ([[_retrieve([])]], r"network\[0\]\[0\]\.tensors: expected a name or a non-empty list"),
        ([[_retrieve("a")], {"type": "flatten"}], r"network: mix of layers and layer lists"),
        ([], r"network: expected a non-empty list of layers"),
        ([[_retrieve("a")], []], r"network\[1\]: empty layer list"),
        (
            [[_retrieve("a"), {"type": "register", "tensor": ""}]],
            r"network\[0\]\[1\]\.tensor: '' is invalid",
        ),
    ],
)
def test_routing_errors(layers, match):
    with pytest.raises(ConfigError, match=match):
        build_network(layers, TWO)


def test_sum_over_mismatched_shapes_names_layer_and_shapes():
    specs = parse_specs(
        {"a": {"type": "float", "shape": (3,)}, "b": {"type": "float", "shape": (4,)}}, "state"
    )
    with pytest.raises(
        ConfigError, match=r"policy\[0\]\[0\]: sum over mismatched shapes: a \(3,\), b \(4,\)"
    ):
        build_network([[_retrieve(["a", "b"], aggregation="sum")]], specs, "policy")
    with pytest.raises(ConfigError, match=r"policy\[0\]: product over mismatched shapes"):
        build_network([_retrieve(["a", "b"], aggregation="product")], specs, "policy")


def test_mixed_types_and_rank_errors():
    specs = parse_specs(
        {
            "a": {"type": "float", "shape": (3,)},
            "i": {"type": "int", "shape": (3,), "num_values": 2},
            "m": {"type": "float", "shape": (3, 1)},
        },
        "state",
    )
    with pytest.raises(ConfigError, match=r"network\[0\]: cannot aggregate tensors of mixed types"):
        build_network([_retrieve(["a", "i"])], specs)
    with pytest.raises(
        ConfigError, match=r"network\[0\]: concat over different ranks: a \(3,\), m \(3, 1\)"
    ):
        build_network([_retrieve(["a", "m"])], specs)
    with pytest.raises(
        ConfigError, match=r"network\[0\]: the network output is an int tensor of shape \(3,\)"
    ):
        build_network([_retrieve("i")], specs)
    with pytest.raises(ConfigError, match=r"network\[1\]: dense got an int input"):
        build_network([_retrieve("i"), {"type": "dense"}], specs)


def test_unknown_layer_type_lists_valid_names():
    specs = parse_specs({"type": "float", "shape": (4,)}, "state")
    with pytest.raises(
        ConfigError,
        match=r"network\[0\]\.type: unknown layer 'dens'; did you mean 'dense'\? "
        r"Valid: activation, batch_norm",
    ):
        build_network([{"type": "dens", "size": 3}], specs)


# ----------------------------------------------------------------- build_network forms


class TinyNet(nn.Module):
    def __init__(self, states):
        super().__init__()
        self.output_size = 2
        self.linear = nn.Linear(states.values()[0].size, 2)

    def forward(self, states):
        return self.linear(next(iter(states.values())))


def test_build_network_forms(tmp_path):
    specs = parse_specs({"type": "float", "shape": (4,)}, "state")
    layered = {"type": "layered", "layers": [{"type": "dense", "size": 7}]}
    (tmp_path / "net.json").write_text(json.dumps(layered))
    (tmp_path / "net.yaml").write_text(yaml.safe_dump(layered))
    assert isinstance(build_network("auto", specs), AutoNetwork)
    assert isinstance(build_network(None, specs), AutoNetwork)
    assert build_network({"type": "auto", "size": 8, "depth": 1}, specs).output_size == 8
    for spec in (layered, str(tmp_path / "net.json"), str(tmp_path / "net.yaml")):
        assert build_network(spec, specs).output_size == 7
    assert build_network(TinyNet, specs).output_size == 2
    module = TinyNet(specs)
    assert build_network(module, specs) is module
    target = {"_target_": "forceexp.core.networks.AutoNetwork", "size": 5, "depth": 1}
    assert build_network(target, specs).output_size == 5


def test_build_network_errors():
    specs = parse_specs({"type": "float", "shape": (4,)}, "state")
    with pytest.raises(
        ConfigError, match=r"baseline\.type: unknown network 'layerd'; did you mean 'layered'"
    ):
        build_network({"type": "layerd"}, specs, "baseline")
    with pytest.raises(ConfigError, match=r"network: Linear has no int attribute output_size"):
        build_network(nn.Linear(4, 2), specs)
    with pytest.raises(ConfigError, match=r"network: 3 is not a network spec"):
        build_network(3, specs)


def test_layered_config_file_builds_and_summary_is_logged(caplog):
    spec = yaml.safe_load((ROOT / "conf/network/layered.yaml").read_text())
    specs = parse_specs({"type": "float", "shape": (4,)}, "state")
    with caplog.at_level(logging.INFO, logger="forceexp.config"):
        network = build_network(spec, specs)
    assert network.output_size == 64
    assert "network[1]" in caplog.text


# ----------------------------------------------------------------- AutoNetwork


def test_auto_network_flat_float_is_the_plain_mlp():
    specs = parse_specs({"type": "float", "shape": (5,)}, "state")
    torch.manual_seed(3)
    network = AutoNetwork(specs)
    torch.manual_seed(3)
    reference = nn.Sequential(
        orthogonal_(nn.Linear(5, 64)), nn.Tanh(), orthogonal_(nn.Linear(64, 64)), nn.Tanh()
    )
    assert not network.encoders
    x = torch.randn(4, 5)
    assert torch.equal(network({"state": x}), reference(x))
    assert sum(p.numel() for p in network.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )


def test_auto_network_encoders_for_images_sequences_and_ints():
    specs = parse_specs(
        {
            **SEED_STATES,
            "sequence": {"type": "float", "shape": (10, 2)},
            "vector": {"type": "float", "shape": (3,)},
            "flag": {"type": "bool", "shape": ()},
            "choice": {"type": "int", "shape": (), "num_values": 4},
        },
        "state",
    )
    network = AutoNetwork(specs, size=8, depth=2)
    assert set(network.encoders) == {"observation", "attributes", "sequence", "choice"}
    assert network.mlp[0].in_features == 8 + 8 * 8 + 8 + 3 + 1 + 8
    states = _states(specs)
    states["flag"] = torch.rand(3) > 0.5
    assert network(states).shape == (3, 8)


def test_auto_network_errors():
    specs = parse_specs({"type": "int", "shape": (2,)}, "state")
    with pytest.raises(ConfigError, match=r"states.state: int states need num_values"):
        AutoNetwork(specs)
    with pytest.raises(ConfigError, match=r"network.activation: unknown activation 'sigmoid'"):
        AutoNetwork(parse_specs({"type": "float", "shape": (2,)}, "state"), activation="sigmoid")


# ----------------------------------------------------------------- agents


def _random_seed_states(rng):
    return {
        "observation": rng.random((16, 16, 3), dtype=np.float32),
        "attributes": rng.integers(5, size=(4, 2)),
    }


def test_seed_example_runs_with_ppo():
    agent = Agent.create(
        agent="ppo",
        states=SEED_STATES,
        actions={"type": "int", "num_values": 3},
        max_episode_timesteps=10,
        policy=SEED_POLICY,
        rollout_length=16,
        minibatch_size=16,
        epochs=1,
        seed=0,
    )
    assert isinstance(agent.policy.network, LayeredNetwork)
    assert isinstance(agent.policy.baseline, AutoNetwork)
    rng = np.random.default_rng(0)
    for _ in range(4):
        for t in range(10):
            action = agent.act(states=_random_seed_states(rng))
            assert 0 <= int(action) < 3
            agent.observe(terminal=t == 9, reward=float(action == 0))
    assert agent.updates >= 2
    action = agent.act(states=_random_seed_states(rng), independent=True, deterministic=True)
    assert 0 <= int(action) < 3
    agent.close()


def test_network_and_baseline_accept_layer_lists():
    agent = Agent.create(
        agent="ppo",
        states={"type": "float", "shape": (4,)},
        actions={"type": "int", "num_values": 2},
        network=[{"type": "dense", "size": 8}],
        baseline=[[{"type": "linear", "size": 3}], [{"type": "activation"}]],
        seed=0,
    )
    assert agent.policy.network.output_size == 8
    assert agent.policy.baseline.output_size == 3
    agent.close()


def test_ppo_learns_identity_with_a_layered_network():
    agent = {
        "agent": "ppo",
        "seed": 0,
        "device": "cpu",
        "rollout_length": 32,
        "minibatch_size": 64,
        "epochs": 4,
        "learning_rate": 3e-3,
        "network": [
            [{"type": "dense", "size": 32}, {"type": "register", "tensor": "hidden"}],
            [
                {"type": "retrieve", "tensors": ["hidden", "state"], "aggregation": "concat"},
                {"type": "dense", "size": 32},
            ],
        ],
    }
    runner = Runner(agent=agent, environment=IdentityEnvironment, num_parallel=4, seed=0)
    runner.run(num_timesteps=4000, use_tqdm=False)
    result = runner.evaluate(num_episodes=10)
    runner.close()
    assert np.mean(runner.episode_returns[:20]) < 4.0  # random play scores about 2 of 8
    assert result["return_mean"] >= 7.5


def test_multi_input_config_is_the_seed_network():
    spec = yaml.safe_load((ROOT / "conf/network/multi_input.yaml").read_text())
    specs = parse_specs(SEED_STATES, "state")
    network = build_network(spec, specs)
    _check(network, specs)
    assert network.summary() == build_network(SEED_POLICY, specs).summary()


def test_docs_examples_run():
    import re

    text = (ROOT / "docs/networks.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    scope: dict = {}
    exec(compile(code, "docs/networks.md", "exec"), scope)
    agent = scope["agent"]
    assert isinstance(agent.policy.network, LayeredNetwork)
    agent.close()
    spec = yaml.safe_load(re.findall(r"```yaml\n(.*?)```", text, flags=re.S)[0])
    assert spec == yaml.safe_load((ROOT / "conf/network/multi_input.yaml").read_text())


def test_dropout_is_off_when_acting_and_on_in_updates():
    import numpy as np

    from forceexp import Agent

    agent = Agent.create(
        "ppo",
        states={"type": "float", "shape": (4,)},
        actions={"type": "float", "shape": (2,)},
        network=[{"type": "dense", "size": 32}, {"type": "dropout", "rate": 0.5}],
        device="cpu",
        seed=0,
        rollout_length=4,
        minibatch_size=4,
        epochs=1,
    )
    obs = np.ones(4, dtype=np.float32)
    first = agent.act(obs, independent=True, deterministic=True)
    assert all(
        np.allclose(first, agent.act(obs, independent=True, deterministic=True)) for _ in range(5)
    )
    assert not agent.policy.training


# ------------------------------------------------------------------ multi-input example env
def test_multi_input_environment_contract():
    from forceexp.environments import create
    from forceexp.environments.testing import MultiInputEnvironment

    env = create("multi_input")
    specs = parse_specs(env.states(), "state")
    assert {name for name, _ in specs.items} == {"observation", "attributes"}
    states = env.reset(seed=3)
    assert states["observation"].shape == (16, 16, 3) and states["observation"].dtype == np.float32
    assert states["attributes"].shape == (4, 2) and states["attributes"].max() < 5
    raw = env.environment
    # the target combines the patch's column band (image) and the shift (attributes[0, 0])
    band = int(np.argmax(states["observation"].sum(axis=(0, 2)))) // 6
    assert raw._target == (band + int(states["attributes"][0, 0])) % 3
    _, terminal, reward = env.execute(raw._target)
    assert reward == 1.0 and terminal == 0
    env.close()
    with pytest.raises(ConfigError, match=r"episode_length: 0 is invalid; expected an int >= 1"):
        MultiInputEnvironment(episode_length=0)


def _multi_input_run(network) -> tuple[float, float]:
    agent = {
        "agent": "ppo",
        "seed": 0,
        "device": "cpu",
        "rollout_length": 32,
        "minibatch_size": 64,
        "epochs": 4,
        "learning_rate": 3e-3,
        "discount": 0.5,
        "network": network,
    }
    runner = Runner(agent=agent, environment="multi_input", num_parallel=4, seed=0)
    runner.run(num_timesteps=4000, use_tqdm=False)
    result = runner.evaluate(num_episodes=20)
    runner.close()
    return float(np.mean(runner.episode_returns[:50])), result["return_mean"]


@pytest.mark.slow
def test_multi_input_network_learns_the_example_env_and_beats_one_input():
    network = yaml.safe_load((ROOT / "conf/network/multi_input.yaml").read_text())
    first, evaluated = _multi_input_run(network)
    assert first < 2.0  # random play scores 4 / 3
    assert evaluated >= 2.6, evaluated
    image_only = [
        {"type": "retrieve", "tensors": "observation"},
        {"type": "conv2d", "size": 16},
        {"type": "flatten"},
        {"type": "dense", "size": 32},
    ]
    _, image_evaluated = _multi_input_run(image_only)
    assert image_evaluated < evaluated - 0.8, (image_evaluated, evaluated)


def test_train_composes_and_runs_on_the_multi_input_env(compose_cfg):
    from forceexp.experiment import train

    cfg = compose_cfg(
        "agent=ppo", "env=multi_input", "network=multi_input", "runner.num_timesteps=256"
    )
    assert cfg.agent.minibatch_size == 64  # tuning/ppo_multi_input.yaml applies
    result = train(cfg)
    assert result["timesteps"] >= 256 and result["updates"] >= 1


def test_auto_network_init_choices():
    from forceexp.specs import parse_specs

    states = parse_specs({"type": "float", "shape": (8,)}, "state")
    torch.manual_seed(0)
    orthogonal = AutoNetwork(states, size=16, depth=1, activation="relu")
    weight = orthogonal.mlp[0].weight.detach()
    gram = weight.T @ weight  # orthogonal rows scaled by sqrt(2): columns' gram is 2 I (8 <= 16)
    assert torch.allclose(gram, 2.0 * torch.eye(8), atol=1e-4)
    assert not orthogonal.mlp[0].bias.any()
    torch.manual_seed(0)
    default = AutoNetwork(states, size=16, depth=1, activation="relu", init="torch")
    bound = 1 / 8**0.5  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases too
    assert default.mlp[0].weight.abs().max() <= bound and default.mlp[0].bias.any()
    with pytest.raises(ConfigError, match=r"network.init: 'xavier' is invalid; expected one of"):
        AutoNetwork(states, init="xavier")
