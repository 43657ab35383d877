"""Layer base class, the LAYERS registry, activations and shape helpers shared by all layers."""

from __future__ import annotations

import math

import torch
from torch import nn

from forceexp.errors import ConfigError, unknown_name
from forceexp.registry import Registry
from forceexp.specs import TensorSpec

Tensors = dict[str, torch.Tensor]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky-relu": nn.LeakyReLU,
    "none": nn.Identity,
    "relu": nn.ReLU,
    "selu": nn.SELU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
}


class Layer(nn.Module):
    """A module built from its input spec that exposes ``output_spec`` (shapes exclude the batch).

    Subclasses check their input and set ``self.output_spec`` in ``__init__``, so a network's
    shapes are known and checked when it is built, before any forward pass.

    Args:
        input_spec: Spec of the running tensor entering the layer (None before any retrieve).
        path: Config path of the layer, e.g. ``network[2][0]``, used in error messages.
    """

    uses_registry = False  # True for layers that read or write named tensors
    uses_named = False  # True for layers that define or reuse named layers (block, reuse)
    internal_shape: tuple[int, ...] | None = None  # per-row internals of stateful layers

    def __init__(self, input_spec: TensorSpec | None, path: str) -> None:
        super().__init__()
        self.path = path
        self.input_spec = input_spec
        self.output_spec = input_spec

    def apply_named(self, x: torch.Tensor | None, tensors: Tensors) -> torch.Tensor:
        """Run the layer on the running tensor ``x`` with access to named ``tensors``."""
        return self(x)

    def step(
        self, x: torch.Tensor, internals: torch.Tensor, t: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of a stateful layer: output and next internals ``(B, *internal_shape)``.

        Layers with ``internal_shape`` (recurrent and temporal preprocessing layers, and
        blocks holding them) override this; the agent keeps their internals per parallel slot
        and zeroes them at episode starts, so all-zero internals mean "first step of an
        episode". ``t`` is the step's index in PPO's sequence re-run (None when acting), for
        truncated backpropagation.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no internals")

    def first_step(self, x: torch.Tensor) -> torch.Tensor:
        """The output from zero internals (an episode's first step): a plain forward pass."""
        assert self.internal_shape is not None
        zeros = torch.zeros((x.shape[0], *self.internal_shape), device=x.device)
        return self.step(x, zeros)[0]

    def require_input(self, kind: str) -> TensorSpec:
        """Return the input spec or raise if the layer has no running tensor to work on."""
        if self.input_spec is None:
            raise ConfigError(
                f"{self.path}: {kind} has no input; start the branch with "
                "dict(type='retrieve', tensors=...)"
            )
        return self.input_spec

    def require_float(self, kind: str) -> TensorSpec:
        """Return the input spec, rejecting int inputs (they need an embedding first)."""
        spec = self.require_input(kind)
        if spec.type == "int":
            raise ConfigError(
                f"{self.path}: {kind} got an int input of shape {spec.shape}; "
                "int inputs need an embedding layer first"
            )
        return spec

    def require_rank(self, kind: str, rank: int, layout: str) -> TensorSpec:
        """Return the (float) input spec, checking its rank (non-batch axes)."""
        spec = self.require_float(kind)
        if len(spec.shape) != rank:
            raise ConfigError(
                f"{self.path}: {kind} expects input shape {layout} (rank {rank}); "
                f"got shape {spec.shape}"
            )
        return spec


def make_activation(path: str, name: str | None) -> nn.Module:
    """The activation module for ``name`` (None or ``'none'`` is the identity)."""
    if name is None:
        return nn.Identity()
    if name not in ACTIVATIONS:
        raise unknown_name(f"{path}.activation", name, ACTIVATIONS, "activation")
    return ACTIVATIONS[name]()


def float_spec(shape: tuple[int, ...]) -> TensorSpec:
    """A float spec of ``shape``."""
    return TensorSpec("float", tuple(int(d) for d in shape))


def check_positive(path: str, **values: int) -> None:
    """Raise unless every value is an int >= 1."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{path}.{key}: {value!r} is invalid; expected an int >= 1")


def window_output(
    path: str, length: int, window: int, stride: int, dilation: int, padding: str
) -> tuple[int, tuple[int, int]]:
    """Output length and ``(left, right)`` zero padding of a sliding window along one axis.

    ``'same'`` gives ``ceil(length / stride)`` outputs; ``'valid'`` only full windows.
    """
    span = (window - 1) * dilation + 1
    if padding == "same":
        out = math.ceil(length / stride)
        total = max((out - 1) * stride + span - length, 0)
        return out, (total // 2, total - total // 2)
    if padding == "valid":
        out = (length - span) // stride + 1
        if out < 1:
            raise ConfigError(
                f"{path}: window {window} (dilation {dilation}) does not fit an axis of "
                f"length {length} with padding 'valid'"
            )
        return out, (0, 0)
    raise ConfigError(f"{path}.padding: {padding!r} is invalid; expected 'same' or 'valid'")


LAYERS: Registry[type[Layer]] = Registry("layer")
