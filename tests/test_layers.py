"""Each layer's build-time output spec against a real forward pass, and layer errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from forceexp.core.layers import LAYERS, build_layer
from forceexp.errors import ConfigError
from forceexp.specs import TensorSpec

torch.set_num_threads(1)

F = TensorSpec("float", (6,))
IMG = TensorSpec("float", (9, 7, 3))
SEQ = TensorSpec("float", (10, 4))
INTS = TensorSpec("int", (4, 2), num_values=5)

CASES = [
    ("dense", F, {"size": 5}),
    ("dense", SEQ, {"size": 3, "activation": "relu", "dropout": 0.1}),
    ("linear", F, {"size": 2, "bias": False}),
    ("conv1d", SEQ, {"size": 8}),
    ("conv1d", SEQ, {"size": 8, "window": 4, "stride": 3, "padding": "valid"}),
    ("conv1d", SEQ, {"size": 2, "window": 3, "dilation": 2, "stride": 2}),
    ("conv2d", IMG, {"size": 4}),
    ("conv2d", IMG, {"size": 4, "window": 2, "stride": 2}),
    ("conv2d", IMG, {"size": 4, "window": 3, "padding": "valid", "dilation": 2}),
    ("pool1d", SEQ, {}),
    ("pool1d", SEQ, {"reduction": "average", "window": 3, "stride": 1}),
    ("pool2d", IMG, {}),
    ("pool2d", IMG, {"reduction": "average", "window": 3, "stride": 2, "padding": "valid"}),
    ("flatten", IMG, {}),
    ("flatten", TensorSpec("float", ()), {}),
    ("reshape", IMG, {"shape": [21, -1]}),
    ("embedding", INTS, {"size": 3}),
    ("embedding", TensorSpec("bool", (3,)), {"size": 2}),
    ("dropout", F, {"rate": 0.5}),
    ("activation", F, {"nonlinearity": "swish"}),
    ("layer_norm", SEQ, {}),
    ("batch_norm", SEQ, {}),
    ("rnn", F, {"size": 4}),
    ("lstm", F, {"size": 5}),
    ("gru", F, {"size": 3}),
    ("residual", F, {"layers": [{"type": "dense", "size": 4}, {"type": "linear", "size": 6}]}),
    ("block", F, {"layers": [{"type": "dense", "size": 4}, {"type": "linear", "size": 3}]}),
    ("self_attention", SEQ, {"size": 5}),
    ("self_attention", IMG, {"size": 2, "attention_size": 3, "bias": True, "dropout": 0.1}),
    ("pooling", IMG, {"reduction": "mean"}),
    ("pooling", IMG, {"reduction": "concat"}),
    ("conv1d_transpose", SEQ, {"size": 3, "stride": 2}),
    ("conv1d_transpose", SEQ, {"size": 3, "window": 4, "stride": 3, "padding": "valid"}),
    ("conv1d_transpose", SEQ, {"size": 3, "window": 2, "stride": 3, "padding": "valid"}),
    ("conv2d_transpose", IMG, {"size": 2, "stride": 2, "dilation": 2}),
    ("conv2d_transpose", IMG, {"size": 2, "stride": 2, "output_shape": [17, 13]}),
    ("linear_normalization", TensorSpec("float", (6,), min_value=-1.0, max_value=3.0), {}),
    ("exponential_normalization", SEQ, {"decay": 0.9}),
    ("instance_normalization", IMG, {"only_mean": True}),
    ("clipping", F, {"lower": -0.5, "upper": 0.5}),
    ("deltafier", SEQ, {"concatenate": 1}),
    ("sequence", SEQ, {"length": 3}),
    ("sequence", SEQ, {"length": 3, "concatenate": False, "axis": 0}),
    ("image", IMG, {"height": 4, "grayscale": True}),
    ("image", IMG, {"width": 14}),
    ("function", F, {"function": "torch.tanh"}),
    ("input_rnn", SEQ, {"cell": "lstm", "size": 6}),
    ("input_lstm", SEQ, {"size": 4, "return_final_state": False}),
    ("input_gru", SEQ, {"size": 3}),
    ("rnn", F, {"cell": "lstm", "size": 4, "horizon": 2}),
    ("gru", F, {"size": 3, "activation": "tanh", "dropout": 0.1, "bias": False}),
]


def _sample(spec: TensorSpec, batch: int = 3) -> torch.Tensor:
    if spec.type == "int":
        return torch.randint(spec.num_values, (batch, *spec.shape))
    if spec.type == "bool":
        return torch.rand(batch, *spec.shape) > 0.5
    return torch.randn(batch, *spec.shape)


@pytest.mark.parametrize(("kind", "spec", "kwargs"), CASES)
def test_output_spec_matches_forward(kind, spec, kwargs):
    layer = build_layer({"type": kind, **kwargs}, spec, "net[0]", {})
    out = layer(_sample(spec))
    assert tuple(out.shape) == (3, *layer.output_spec.shape)
    layer.eval()
    assert tuple(layer(_sample(spec, 1)).shape) == (1, *layer.output_spec.shape)


def test_every_registered_layer_has_a_shape_case():
    covered = {kind for kind, _, _ in CASES} | {"register", "retrieve", "reuse"}
    assert covered == set(LAYERS.keys())


def test_same_padding_keeps_spatial_size():
    layer = build_layer({"type": "conv2d", "size": 5, "window": 5}, IMG, "p", {})
    assert layer.output_spec.shape == (9, 7, 5)
    layer = build_layer({"type": "conv2d", "size": 5, "stride": 2}, IMG, "p", {})
    assert layer.output_spec.shape == (5, 4, 5)


def test_average_pool_ignores_padding():
    layer = build_layer(
        {"type": "pool1d", "reduction": "average"}, TensorSpec("float", (3, 1)), "p", {}
    )
    out = layer(torch.ones(1, 3, 1))
    assert torch.allclose(out, torch.ones(1, 2, 1))


def test_batch_norm_single_row_uses_running_stats():
    layer = build_layer("batch_norm", F, "p", {})
    out = layer(torch.randn(1, 6))
    assert out.shape == (1, 6)


def test_bare_string_spec_and_name_key():
    assert build_layer("flatten", IMG, "p", {}).output_spec.shape == (189,)
    layer = build_layer({"type": "dense", "size": 2, "name": "head"}, F, "p", {})
    assert layer.output_spec.shape == (2,)


class Doubler(nn.Module):
    def __init__(self, input_shape, factor: int = 2):
        super().__init__()
        self.factor = factor
        self.proj = nn.Linear(input_shape[-1], 3)

    def forward(self, x):
        return self.proj(x).repeat(1, self.factor)


class Broken(nn.Module):
    def forward(self, x):
        return x @ torch.zeros(99, 1)


def test_custom_layer_by_import_path_and_class():
    layer = build_layer({"type": f"{__name__}.Doubler", "factor": 3}, F, "p", {})
    assert layer.output_spec.shape == (9,)
    assert layer(torch.randn(4, 6)).shape == (4, 9)
    layer = build_layer({"type": Doubler}, F, "p", {})
    assert layer.output_spec.shape == (6,)


@pytest.mark.parametrize(
    ("spec", "input_spec", "match"),
    [
        (
            {"type": "dens"},
            F,
            r"net\[2\]\.type: unknown layer 'dens'; did you mean 'dense'\? Valid: ",
        ),
        ({"type": "dense", "sise": 3}, F, r"net\[2\]\.sise: unknown argument of layer Dense"),
        ({"size": 3}, F, r"net\[2\]: layer spec .* has no 'type' key"),
        (3, F, r"net\[2\]: 3 is invalid; expected a layer name"),
        (
            {"type": "dense"},
            INTS,
            r"net\[2\]: dense got an int input of shape \(4, 2\); int inputs need an embedding",
        ),
        (
            {"type": "dense"},
            TensorSpec("float", ()),
            r"net\[2\]: dense needs an input of rank >= 1",
        ),
        ({"type": "dense", "size": 0}, F, r"net\[2\]\.size: 0 is invalid"),
        ({"type": "dense", "dropout": 1.5}, F, r"net\[2\]\.dropout: 1.5 is invalid"),
        (
            {"type": "dense", "activation": "rel"},
            F,
            r"unknown activation 'rel'; did you mean 'relu'",
        ),
        (
            {"type": "embedding"},
            F,
            r"net\[2\]: embedding needs an int or bool input; got a float input of shape \(6,\)",
        ),
        (
            {"type": "embedding"},
            TensorSpec("int", (2,)),
            r"net\[2\]\.num_values: the int input has no num_values",
        ),
        (
            {"type": "conv2d"},
            F,
            r"net\[2\]: conv2d expects input shape \(height, width, channels\) \(rank 3\); "
            r"got shape \(6,\)",
        ),
        (
            {"type": "conv1d"},
            IMG,
            r"net\[2\]: conv1d expects input shape \(length, channels\) \(rank 2\); "
            r"got shape \(9, 7, 3\)",
        ),
        ({"type": "conv2d", "padding": "full"}, IMG, r"net\[2\]\.padding: 'full' is invalid"),
        (
            {"type": "conv2d", "window": 9, "padding": "valid"},
            IMG,
            r"net\[2\]: window 9 .* does not fit an axis of length 7",
        ),
        ({"type": "pool2d", "reduction": "min"}, IMG, r"net\[2\]\.reduction: 'min' is invalid"),
        (
            {"type": "reshape", "shape": [5, 5]},
            IMG,
            r"net\[2\]: cannot reshape input shape \(9, 7, 3\) \(189 elements\) to shape \(5, 5\)",
        ),
        ({"type": "dropout", "rate": 1.0}, F, r"net\[2\]\.rate: 1.0 is invalid"),
        (
            {"type": "layer_norm"},
            TensorSpec("float", ()),
            r"net\[2\]: layer_norm needs an input of rank >= 1",
        ),
        (
            {"type": "batch_norm"},
            TensorSpec("float", ()),
            r"net\[2\]: batch_norm needs an input of rank >= 1",
        ),
        (
            {"type": "residual", "layers": [{"type": "dense", "size": 4}]},
            F,
            r"net\[2\]: residual block output shape \(4,\) != input shape \(6,\)",
        ),
        ({"type": "residual", "layers": []}, F, r"net\[2\]\.layers: expected a non-empty list"),
        (
            {"type": "residual", "layers": [{"type": "register", "tensor": "x"}]},
            F,
            r"net\[2\]\.layers\[0\]: register/retrieve is not allowed here",
        ),
        (
            {"type": "no_such_pkg.Layer"},
            F,
            r"net\[2\]\.type: 'no_such_pkg.Layer' is invalid; expected an importable "
            r"'package.module.name'. import failed: No module named 'no_such_pkg'",
        ),
        (
            {"type": "collections.OrderedDict"},
            F,
            r"net\[2\]\.type: 'collections.OrderedDict' is not an nn.Module class",
        ),
        ({"type": dict}, F, r"net\[2\]\.type: <class 'dict'> is not an nn.Module class"),
        (
            {"type": f"{__name__}.Broken"},
            F,
            r"net\[2\]: custom layer Broken failed on input shape \(6,\)",
        ),
        (
            {"type": "flatten"},
            None,
            r"net\[2\]: flatten has no input; start the branch with dict\(type='retrieve'",
        ),
    ],
)
def test_layer_errors(spec, input_spec, match):
    with pytest.raises(ConfigError, match=match):
        build_layer(spec, input_spec, "net[2]", {})
