"""Tensorforce's layers against hand-computed values; layers and networks as paths/functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from forceexp import Agent
from forceexp.config import build_network
from forceexp.core.layers import build_layer
from forceexp.errors import ConfigError
from forceexp.specs import TensorSpec, parse_specs

torch.set_num_threads(1)

VECTOR = parse_specs({"type": "float", "shape": (2,)}, "state")
TWO = parse_specs(
    {"a": {"type": "float", "shape": (3,)}, "b": {"type": "float", "shape": (3,)}}, "state"
)


def _layer(spec, shape=(2,), **bounds):
    return build_layer(spec, TensorSpec("float", shape, **bounds), "p", {})


def _rows(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_global_pooling_reductions():
    x = torch.arange(1.0, 7.0).reshape(1, 3, 2)  # positions (1,2), (3,4), (5,6)
    expected = {
        "max": [5.0, 6.0],
        "mean": [3.0, 4.0],
        "sum": [9.0, 12.0],
        "product": [15.0, 48.0],
        "concat": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    }
    for reduction, values in expected.items():
        layer = _layer({"type": "pooling", "reduction": reduction}, (3, 2))
        assert layer.output_spec.shape == (len(values),)
        assert layer(x).tolist() == [values]
    with pytest.raises(ConfigError, match=r"p\.reduction: 'min' is invalid; expected one of"):
        _layer({"type": "pooling", "reduction": "min"}, (3, 2))


def test_pool2d_values():
    x = torch.arange(16.0).reshape(1, 4, 4, 1)
    high = _layer({"type": "pool2d", "reduction": "max"}, (4, 4, 1))
    assert high(x).squeeze().tolist() == [[5.0, 7.0], [13.0, 15.0]]
    mean = _layer({"type": "pool2d", "reduction": "average"}, (4, 4, 1))
    assert mean(x).squeeze().tolist() == [[2.5, 4.5], [10.5, 12.5]]


def test_clipping_values_and_errors():
    x = _rows([-2.0, 0.5], [5.0, -0.25])
    both = _layer({"type": "clipping", "lower": -1.0, "upper": 1.0})
    assert both(x).tolist() == [[-1.0, 0.5], [1.0, -0.25]]
    assert _layer({"type": "clipping", "upper": 0.0})(x).tolist() == [[-2.0, 0.0], [0.0, -0.25]]
    with pytest.raises(ConfigError, match="p: clipping needs lower, upper or both"):
        _layer({"type": "clipping"})
    with pytest.raises(ConfigError, match=r"p\.upper: -1.0 is invalid; expected a value >= lower"):
        _layer({"type": "clipping", "lower": 1.0, "upper": -1.0})


def test_linear_normalization_uses_the_state_bounds():
    layer = _layer({"type": "linear_normalization"}, (3,), min_value=0.0, max_value=4.0)
    assert layer(_rows([0.0, 1.0, 4.0])).tolist() == [[-2.0, -1.0, 2.0]]
    given = _layer(
        {"type": "linear_normalization", "min_value": [0.0, -np.inf], "max_value": [2.0, 1.0]}
    )
    assert given(_rows([1.0, 7.0])).tolist() == [[0.0, 7.0]]  # infinite bound: unchanged
    with pytest.raises(ConfigError, match=r"p\.min_value: the input has no min_value"):
        _layer({"type": "linear_normalization"})
    with pytest.raises(ConfigError, match=r"p: min_value .* is not below max_value"):
        _layer({"type": "linear_normalization", "min_value": 1.0, "max_value": 1.0})


def test_exponential_normalization_updates_in_training_only():
    layer = _layer({"type": "exponential_normalization", "decay": 0.5}, (1,))
    x = _rows([1.0], [3.0])  # batch mean 2, variance 1; old weight 0.5 ** 2
    out = layer.train()(x)
    assert torch.allclose(layer.mean, torch.tensor([1.5]))
    assert torch.allclose(layer.variance, torch.tensor([1.0]))
    assert torch.allclose(out, _rows([-0.5], [1.5]))
    assert torch.allclose(layer.eval()(_rows([2.5])), _rows([1.0]))
    assert torch.allclose(layer.mean, torch.tensor([1.5]))  # eval: frozen
    assert set(layer.state_dict()) == {"mean", "variance"}  # saved with the weights
    with pytest.raises(ConfigError, match=r"p\.decay: 1.5 is invalid"):
        _layer({"type": "exponential_normalization", "decay": 1.5})


def test_instance_normalization_values_and_gradient():
    layer = _layer({"type": "instance_normalization"})
    x = _rows([1.0, 3.0], [0.0, 4.0]).requires_grad_()
    out = layer(x)
    assert torch.allclose(out, _rows([-1.0, 1.0], [-1.0, 1.0]))
    out[:, 1].sum().backward()  # statistics are constants for the gradient
    assert torch.allclose(x.grad, _rows([0.0, 1.0], [0.0, 0.5]))
    with pytest.raises(ConfigError, match=r"p\.axes: \[2\] is invalid; expected axes in"):
        _layer({"type": "instance_normalization", "axes": [2]})


def test_deltafier_across_an_episode_reset():
    layer = _layer({"type": "deltafier"})
    assert layer.internal_shape == (3,)
    internals = torch.zeros(1, 3)  # an episode start
    deltas = []
    for x in ([1.0, 2.0], [4.0, 4.0], [5.0, 3.0]):
        delta, internals = layer.step(_rows(x), internals)
        deltas.append(delta[0].tolist())
    assert deltas == [[0.0, 0.0], [3.0, 2.0], [1.0, -1.0]]
    delta, _ = layer.step(_rows([9.0, 9.0]), torch.zeros_like(internals))  # reset
    assert delta.tolist() == [[0.0, 0.0]]
    both = _layer({"type": "deltafier", "concatenate": 0})
    assert both.output_spec.shape == (4,)
    out, _ = both.step(_rows([2.0, 2.0]), torch.cat((torch.ones(1, 1), _rows([1.0, 3.0])), 1))
    assert out.tolist() == [[2.0, 2.0, 1.0, -1.0]]
    with pytest.raises(ConfigError, match=r"p\.concatenate: 1 is invalid; expected False or"):
        _layer({"type": "deltafier", "concatenate": 1})


def test_sequence_stacks_the_last_inputs_per_row():
    layer = _layer({"type": "sequence", "length": 3}, (1,))
    assert layer.output_spec.shape == (3,)
    internals = torch.zeros(2, *layer.internal_shape)
    outs = []
    for t in range(4):
        out, internals = layer.step(_rows([t + 1.0], [10.0 * (t + 1)]), internals)
        outs.append(out.tolist())
    assert outs[0] == [[1.0, 1.0, 1.0], [10.0, 10.0, 10.0]]  # the first input repeats
    assert outs[1] == [[1.0, 1.0, 2.0], [10.0, 10.0, 20.0]]
    assert outs[3] == [[2.0, 3.0, 4.0], [20.0, 30.0, 40.0]]
    internals[1] = 0.0  # slot 1 starts a new episode
    out, _ = layer.step(_rows([5.0], [7.0]), internals)
    assert out.tolist() == [[3.0, 4.0, 5.0], [7.0, 7.0, 7.0]]
    stacked = _layer({"type": "sequence", "length": 2, "concatenate": False, "axis": 0})
    assert stacked.output_spec.shape == (2, 2)
    out, _ = stacked.step(_rows([3.0, 4.0]), torch.tensor([[1.0, 1.0, 2.0]]))
    assert out.tolist() == [[[1.0, 2.0], [3.0, 4.0]]]
    with pytest.raises(ConfigError, match=r"p\.length: 1 is invalid; expected an int >= 2"):
        _layer({"type": "sequence", "length": 1})


def test_image_resize_and_grayscale():
    layer = _layer({"type": "image", "height": 1, "width": 4}, (1, 2, 1))
    out = layer(torch.tensor([0.0, 1.0]).reshape(1, 1, 2, 1))
    assert torch.allclose(out.flatten(), torch.tensor([0.0, 0.25, 0.75, 1.0]))  # half-pixel
    gray = _layer({"type": "image", "grayscale": True}, (1, 1, 3))
    assert gray.output_spec.shape == (1, 1, 1)
    value = gray(torch.tensor([1.0, 2.0, 3.0]).reshape(1, 1, 1, 3)).item()
    assert value == pytest.approx(0.2989 + 2 * 0.587 + 3 * 0.114, abs=1e-5)
    assert _layer({"type": "image", "width": 8}, (6, 4, 3)).output_spec.shape == (12, 8, 3)
    with pytest.raises(ConfigError, match=r"p\.grayscale: \[1.0\] is invalid; expected weights"):
        _layer({"type": "image", "grayscale": [1.0]}, (2, 2, 3))


def test_conv1d_transpose_values():
    valid = _layer(
        {"type": "conv1d_transpose", "size": 1, "window": 2, "stride": 2, "padding": "valid"},
        (2, 1),
    )
    same = _layer({"type": "conv1d_transpose", "size": 1, "window": 3, "activation": None}, (3, 1))
    with torch.no_grad():
        valid.conv.weight.copy_(torch.tensor([1.0, 10.0]).view(1, 1, 2))
        valid.conv.bias.zero_()
        same.conv.weight.fill_(1.0)
        same.conv.bias.zero_()
    assert valid(torch.tensor([1.0, 2.0]).view(1, 2, 1)).flatten().tolist() == [1, 10, 2, 20]
    assert same(torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1)).flatten().tolist() == [3, 6, 5]
    with pytest.raises(ConfigError, match=r"p: output 9 is invalid for input \(3,\)"):
        _layer({"type": "conv1d_transpose", "output_width": 9}, (3, 1))


def test_self_attention_matches_the_formula():
    layer = _layer({"type": "self_attention", "size": 3, "attention_size": 2}, (4, 5))
    x = torch.randn(2, 4, 5)
    q, k, v = layer.query(x), layer.key(x), layer.value(x)
    expected = torch.softmax(q @ k.transpose(1, 2) / np.sqrt(2), dim=-1) @ v
    assert torch.allclose(layer(x), expected, atol=1e-6)
    with pytest.raises(ConfigError, match=r"p: self_attention expects an input of rank >= 2"):
        _layer({"type": "self_attention"})


def test_input_rnn_final_state_and_sequence_output():
    every = _layer({"type": "input_gru", "size": 3, "return_final_state": False}, (5, 2))
    final = _layer({"type": "input_gru", "size": 3}, (5, 2))
    final.load_state_dict(every.state_dict())
    x = torch.randn(4, 5, 2)
    assert every(x).shape == (4, 5, 3)
    assert torch.allclose(final(x), every(x)[:, -1], atol=1e-6)
    lstm = _layer({"type": "input_rnn", "cell": "lstm", "size": 6}, (5, 2))
    assert lstm.rnn.hidden_size == 3 and lstm(x).shape == (4, 6)  # hidden and cell
    with pytest.raises(ConfigError, match=r"p\.size: 5 is invalid; expected an even int"):
        _layer({"type": "input_lstm", "size": 5}, (5, 2))
    with pytest.raises(ConfigError, match=r"p\.cell: 'rnn' is invalid; expected one of gru, lstm"):
        _layer({"type": "input_rnn", "cell": "rnn"}, (5, 2))


def test_rnn_cell_and_horizon_truncate_the_gradient():
    assert isinstance(_layer({"type": "rnn", "cell": "gru", "size": 3}).cell, nn.GRUCell)
    grads = {}
    for horizon in (None, 1):
        network = build_network(
            [{"type": "rnn", "cell": "lstm", "size": 3, "horizon": horizon}], VECTOR
        )
        xs = torch.randn(3, 1, 2, requires_grad=True)
        internals = {"network[0]": torch.zeros(1, 2, 3)}
        for t in range(3):
            out, internals = network.step({"state": xs[t]}, internals, t)
        out.sum().backward()
        grads[horizon] = xs.grad[0].abs().sum().item()
    assert grads[None] > 0 and grads[1] == 0.0  # horizon 1: no gradient into earlier steps
    with pytest.raises(ConfigError, match=r"p\.cell: 'tanh' is invalid; expected one of gru"):
        _layer({"type": "rnn", "cell": "tanh"})


def test_block_and_reuse_share_weights():
    encoder = {"type": "block", "name": "enc", "layers": [{"type": "dense", "size": 4}]}
    network = build_network(
        [
            [{"type": "retrieve", "tensors": "a"}, encoder, {"type": "register", "tensor": "ea"}],
            [{"type": "retrieve", "tensors": "b"}, {"type": "reuse", "layer": "enc"}],
            [{"type": "register", "tensor": "eb"}],
            [{"type": "retrieve", "tensors": ["ea", "eb"]}, {"type": "linear", "size": 1}],
        ],
        TWO,
    )
    assert sum(p.numel() for p in network.parameters()) == (3 * 4 + 4) + (8 + 1)
    x = torch.randn(2, 3)
    assert network({"a": x, "b": x}).shape == (2, 1)
    assert torch.equal(network.layers[4](x), network.layers[1](x))  # reuse == block
    named_dense = build_network(
        [{"type": "dense", "size": 2, "name": "d"}, {"type": "reuse", "layer": "d"}], VECTOR
    )
    first = named_dense.layers[0]
    assert torch.allclose(named_dense({"state": x[:, :2]}), first(first(x[:, :2])))


def test_reuse_and_block_errors():
    dense = {"type": "dense", "size": 4, "name": "d"}
    with pytest.raises(ConfigError, match=r"network\[1\]\.layer: unknown named layer 'e'"):
        build_network([dense, {"type": "reuse", "layer": "e"}], VECTOR)
    with pytest.raises(ConfigError, match=r"network\[1\]: reused layer 'd' \(network\[0\]\) was"):
        build_network([dense, {"type": "reuse", "layer": "d"}], VECTOR)
    with pytest.raises(ConfigError, match=r"network\[1\]\.name: layer name 'd' is used twice"):
        build_network([dense, dense], VECTOR)
    with pytest.raises(ConfigError, match=r"network\[0\]\.layers\[0\]: register/retrieve is not"):
        build_network([{"type": "block", "layers": [{"type": "register", "tensor": "x"}]}], VECTOR)


def test_tensorforce_nested_blocks_with_an_lstm_in_ppo():
    """Tensorforce's own block/reuse test network (reuse inside one network here)."""
    test1 = {
        "type": "block",
        "name": "test1",
        "layers": [
            {"type": "dense", "size": 4},
            {"type": "block", "name": "test2", "layers": [{"type": "dense", "size": 4}]},
            {"type": "reuse", "layer": "test2"},
            {
                "type": "block",
                "name": "test3",
                "layers": [{"type": "lstm", "size": 4, "horizon": 2}],
            },
            {"type": "reuse", "layer": "test2"},
        ],
    }
    network = [
        [
            {"type": "retrieve", "tensors": "float_state"},
            test1,
            {"type": "register", "tensor": "a"},
        ],
        [
            {"type": "retrieve", "tensors": "float_state"},
            {"type": "reuse", "layer": "test1"},
            {"type": "reuse", "layer": "test2"},
            {"type": "register", "tensor": "b"},
        ],
        [{"type": "retrieve", "tensors": ["a", "b"]}],
    ]
    states = {
        "int_state": {"type": "int", "shape": (1, 2), "num_values": 4},
        "float_state": {"type": "float", "shape": (3,), "min_value": 1.0, "max_value": 2.0},
    }
    agent = Agent.create(
        agent="ppo",
        states=states,
        actions={"type": "int", "num_values": 2},
        network=network,
        parallel_interactions=2,
        rollout_length=6,
        minibatch_size=12,
        seed=0,
        device="cpu",
    )
    shapes = agent.policy.internal_shapes
    assert shapes == {"network[0][1]": (8,), "network[1][1]": (8,)}  # lstm (2, 4), flattened
    rng = np.random.default_rng(0)
    for t in range(14):
        batch = {
            "int_state": rng.integers(4, size=(2, 1, 2)),
            "float_state": rng.uniform(1, 2, (2, 3)).astype(np.float32),
        }
        agent.act(batch)
        agent.observe(reward=[1.0, 0.0], terminal=[int(t % 4 == 3), 0], parallel=[0, 1])
    assert agent.updates >= 1
    assert agent._internals["network[1][1]"][1].abs().sum() > 0  # carried per slot
    agent.close()


def double(x: torch.Tensor) -> torch.Tensor:
    """A plain function used as a layer."""
    return 2.0 * x


class TinyNet(nn.Module):
    """A user network class named by its import path."""

    def __init__(self, states, size: int = 3) -> None:
        super().__init__()
        self.linear = nn.Linear(states.values()[0].size, size)
        self.output_size = size

    def forward(self, states):
        return self.linear(next(iter(states.values())))


def tiny_net(states, size: int = 5) -> nn.Module:
    """A plain function building a network."""
    return TinyNet(states, size)


def test_layers_as_functions_and_import_paths():
    x = _rows([1.0, -1.0])
    network = build_network([double, f"{__name__}.double", "torch.tanh"], VECTOR)
    assert torch.allclose(network({"state": x}), torch.tanh(4.0 * x))
    layer = _layer({"type": "function", "function": double, "output_spec": {"shape": [2]}})
    assert layer(x).tolist() == [[2.0, -2.0]]
    summed = _layer({"type": "function", "function": lambda t: t.sum(-1, keepdim=True)})
    assert summed.output_spec.shape == (1,)
    with pytest.raises(ConfigError, match=r"p\.output_spec: .* does not match the function's"):
        _layer({"type": "function", "function": double, "output_spec": {"shape": [3]}})
    with pytest.raises(ConfigError, match=r"p\.function: '\(x\+1\)/2' is invalid; expected a"):
        _layer({"type": "function", "function": "(x+1)/2"})
    with pytest.raises(ConfigError, match=r"p: function <lambda> failed on input shape \(2,\)"):
        _layer({"type": "function", "function": lambda t: t @ torch.zeros(5, 1)})
    with pytest.raises(ConfigError, match=r"network\[0\]: 'nowhere.fn' is invalid; expected an "):
        build_network(["nowhere.fn"], VECTOR)


def test_networks_as_import_paths_and_functions():
    assert build_network(f"{__name__}.TinyNet", VECTOR).output_size == 3
    assert build_network({"type": f"{__name__}.TinyNet", "size": 4}, VECTOR).output_size == 4
    assert build_network(tiny_net, VECTOR).output_size == 5
    assert build_network({"type": f"{__name__}.tiny_net", "size": 2}, VECTOR).output_size == 2
    with pytest.raises(
        ConfigError, match=r"network: 'no_such_pkg.Net' is invalid; expected an importable"
    ):
        build_network("no_such_pkg.Net", VECTOR)
    with pytest.raises(ConfigError, match=r"network\.type: 'forceexp.NoSuch' is invalid"):
        build_network({"type": "forceexp.NoSuch"}, VECTOR)


def _ppo(**kwargs):
    spec = {
        "agent": "ppo",
        "states": {"type": "float", "shape": (3,), "min_value": -1.0, "max_value": 1.0},
        "actions": {"type": "int", "num_values": 2},
        "network": [
            {"type": "linear_normalization"},
            {"type": "deltafier", "concatenate": 0},
            {"type": "sequence", "length": 2},
            {"type": "dense", "size": 8},
            {"type": "exponential_normalization", "decay": 0.9},
            {"type": "clipping", "lower": -3.0, "upper": 3.0},
            {"type": "function", "function": "torch.tanh"},
        ],
        "rollout_length": 4,
        "minibatch_size": 8,
        "epochs": 2,
        "seed": 0,
        "device": "cpu",
    }
    return Agent.create(**{**spec, **kwargs})


def test_ppo_sequence_rerun_reproduces_acting_log_probs_with_temporal_layers():
    agent = _ppo(parallel_interactions=3, rollout_length=40)
    assert set(agent.policy.internal_shapes) == {"network[1]", "network[2]"}
    rng = np.random.default_rng(0)
    for _ in range(30):
        agent.act(rng.uniform(-1, 1, (3, 3)).astype(np.float32))
        terminals = (rng.random(3) < 0.2).astype(int)
        agent.observe(reward=rng.random(3), terminal=terminals, parallel=[0, 1, 2])
    seq = agent.buffer.sequences(torch.zeros(3), 0.9, 0.9)
    assert seq.starts.any()
    with torch.no_grad():
        features = agent.policy.sequence_features(seq.states, seq.internals, seq.starts)
        log_prob, _, _ = agent.policy.evaluate_features(
            features.flatten(0, 1),
            {n: x.flatten(0, 1) for n, x in seq.states.items()},
            {n: x.flatten(0, 1) for n, x in seq.actions.items()},
            {},
        )
    assert torch.allclose(log_prob, seq.log_prob.flatten(), atol=1e-5)
    agent.close()


def test_ppo_with_tensorforce_layers_updates_and_round_trips(tmp_path):
    agent = _ppo(parallel_interactions=2)
    rng = np.random.default_rng(1)
    for t in range(12):
        agent.act(rng.uniform(-1, 1, (2, 3)).astype(np.float32))
        agent.observe(reward=[1.0, 0.0], terminal=[int(t % 3 == 2), 0], parallel=[0, 1])
    assert agent.updates >= 1
    norm = agent.policy.network.layers[4]
    assert norm.mean.abs().sum() > 0  # the moving averages moved during the updates
    agent.save(tmp_path)
    loaded = Agent.load(tmp_path)
    assert torch.equal(loaded.policy.network.layers[4].mean, norm.mean)
    states = rng.uniform(-1, 1, (4, 3)).astype(np.float32)
    internals = {
        path: np.zeros((4, *shape), np.float32)
        for path, shape in agent.policy.internal_shapes.items()
    }
    kwargs = {"internals": internals, "parallel": [0] * 4, "independent": True}
    first = agent.act(states, deterministic=True, **kwargs)
    again = loaded.act(states, deterministic=True, **kwargs)
    assert np.array_equal(first[0], again[0])
    for path in internals:
        assert np.allclose(first[1][path], again[1][path])
    agent.close()
    loaded.close()


def test_networks_without_internals_refuse_temporal_layers():
    """The DQN family carries internals; critics of the continuous agents read (state, action)
    at every step and carry none, so a deltafier there is refused by name."""
    states, actions = {"type": "float", "shape": (2,)}, {"type": "int", "num_values": 2}
    network = [{"type": "deltafier"}, {"type": "dense", "size": 4}]
    assert Agent.create(agent="dqn", states=states, actions=actions, network=network)
    with pytest.raises(ConfigError, match=r"this layer keeps internals"):
        Agent.create(
            agent="ddpg",
            states=states,
            actions={"type": "float", "shape": (1,), "min_value": -1.0, "max_value": 1.0},
            critic=network,
        )


def test_runner_with_temporal_layers_over_parallel_episodes():
    from forceexp import Runner

    agent = {
        "agent": "ppo",
        "seed": 0,
        "device": "cpu",
        "rollout_length": 16,
        "minibatch_size": 32,
        "epochs": 1,
        "network": [
            {"type": "deltafier", "concatenate": 0},
            {"type": "sequence", "length": 3},
            {"type": "dense", "size": 8},
        ],
    }
    runner = Runner(agent=agent, environment="CartPole-v1", num_parallel=2, seed=0)
    runner.run(num_timesteps=256, use_tqdm=False)
    result = runner.evaluate(num_episodes=2)
    runner.close()
    assert len(runner.episode_returns) >= 4 and result["episodes"] == 2.0


def test_docs_tensorforce_layers_example_runs():
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs/networks.md").read_text()
    code = next(c for c in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "reuse" in c)
    scope: dict = {}
    exec(compile(code, "docs/networks.md", "exec"), scope)
    agent = scope["agent"]
    assert set(agent.policy.internal_shapes) == {"network[1]"}  # the deltafier
    network = agent.policy.network
    assert network.layers[4].target[0] is network.layers[2]
    agent.close()
