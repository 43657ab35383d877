"""AutoNetwork: per-state encoders chosen by type and shape, concatenated, then a dense stack."""

from __future__ import annotations

import torch
from torch import nn

from forceexp.core.init import orthogonal_
from forceexp.core.layers.base import float_spec
from forceexp.core.layers.conv import Conv1d, Conv2d
from forceexp.core.layers.dense import Embedding
from forceexp.core.layers.misc import Flatten
from forceexp.core.layers.recurrent import LSTM
from forceexp.errors import ConfigError, message
from forceexp.specs import Specs, TensorSpec

INITS = ("orthogonal", "torch")
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}


class _GlobalMax(nn.Module):
    """Max over the spatial axes of a channels-last ``(B, *spatial, C)`` tensor -> ``(B, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1, -2).amax(dim=1)


def _encoder(name: str, spec: TensorSpec, size: int, depth: int) -> nn.Sequential | None:
    """The encoder of one state, or None when it is used flat (float/bool of rank <= 1 or > 3).

    Int states: embedding(size) then flatten. Float rank 2 / rank 3 states: ``depth``
    stride-2 conv1d / conv2d layers of ``size`` channels (relu), then a global max pool.
    """
    path = f"network.encoders.{name}"
    if spec.type == "int":
        if spec.num_values is None:
            raise ConfigError(f"states.{name}: int states need num_values for the auto network")
        embedding = Embedding(spec, path, size=size)
        return nn.Sequential(embedding, Flatten(embedding.output_spec, path))
    if spec.type != "float" or len(spec.shape) not in (2, 3):
        return None
    conv = Conv1d if len(spec.shape) == 2 else Conv2d
    layers: list[nn.Module] = []
    running = spec
    for i in range(max(depth, 1)):
        layer = conv(running, f"{path}[{i}]", size=size, stride=2)
        layers.append(layer)
        running = layer.output_spec
    return nn.Sequential(*layers, _GlobalMax())


def _layer_sizes(size: int | list[int], depth: int) -> list[int]:
    """Units of each dense layer: ``depth`` times ``size``, or the list ``size``."""
    sizes = list(size) if isinstance(size, list | tuple) else [size] * depth
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
        raise ConfigError(f"network.size: {size!r} is invalid; expected an int >= 1 or a list")
    return sizes


def _encoded_size(spec: TensorSpec, encoder: nn.Sequential | None, size: int) -> int:
    if encoder is None:
        return spec.size
    if spec.type == "int":
        return spec.size * size
    return size


class AutoNetwork(nn.Module):
    """A network that works for any dict of states with no configuration.

    Float vectors (and bool states) are flattened; image-like float states ``(H, W, C)`` pass
    through conv2d layers and sequence-like ``(L, C)`` ones through conv1d layers (each then
    max-pooled to ``size`` features); int states are embedded (``size`` per value). Everything
    is concatenated and passed through ``depth`` dense layers of ``size`` units. For flat float
    states this is exactly a ``depth`` x ``size`` MLP with orthogonal init (gain sqrt 2), or
    PyTorch's default init with ``init='torch'``.

    Args:
        states: The agent's state specs.
        size: Units per dense layer (and channels / embedding width of the encoders), or a
            list of units, one per dense layer (SB3's ``net_arch=[400, 300]``; the encoders
            then use the first and ``depth`` is ignored for the dense stack).
        depth: Number of dense layers (and of conv layers per image-like state).
        activation: Dense-layer activation, one of ``tanh``, ``relu``, ``elu``, ``gelu``,
            ``silu``.
        init: Dense-layer weights: ``'orthogonal'`` (gain sqrt 2, zero bias: SB3's on-policy
            ``ortho_init``) or ``'torch'`` (PyTorch's default: what SB3's DQN, SAC, TD3 and
            DDPG use; on CartPole DQN learned markedly better with it).
        rnn: False, or the horizon (an int >= 0) of an LSTM of ``size`` units (tanh output,
            as Tensorforce's) added after the dense stack: the ``lstm`` layer of the layer
            library, so the network carries its internals like a layer list with ``lstm``
            (``internal_shapes``, ``step``; only on-policy agents accept them).
        path: Config path (``network``/``baseline``), naming the LSTM's internals.
    """

    def __init__(
        self,
        states: Specs,
        size: int | list[int] = 64,
        depth: int = 2,
        activation: str = "tanh",
        init: str = "orthogonal",
        rnn: int | bool = False,
        path: str = "network",
    ):
        super().__init__()
        if init not in INITS:
            raise ConfigError(message("network.init", init, f"one of {', '.join(INITS)}"))
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"network.activation: unknown activation {activation!r}; "
                f"valid: {', '.join(sorted(ACTIVATIONS))}"
            )
        sizes = _layer_sizes(size, depth)
        if not isinstance(size, int):
            size = sizes[0] if sizes else 64  # the encoders' width
        self.specs = [(name, spec) for name, spec in states.items]
        encoders = {name: _encoder(name, spec, size, depth) for name, spec in self.specs}
        width = sum(_encoded_size(spec, encoders[name], size) for name, spec in self.specs)
        self.encoders = nn.ModuleDict({k: v for k, v in encoders.items() if v is not None})
        layers: list[nn.Module] = []
        for units in sizes:
            linear = nn.Linear(width, units)
            layers += [orthogonal_(linear) if init == "orthogonal" else linear]
            layers.append(ACTIVATIONS[activation]())
            width = units
        self.mlp = nn.Sequential(*layers)
        self.output_size = width
        self.internal_shapes: dict[str, tuple[int, ...]] = {}
        self.lstm: LSTM | None = None
        if rnn is not False:
            if isinstance(rnn, bool) or not isinstance(rnn, int) or rnn < 0:
                raise ConfigError(message(f"{path}.rnn", rnn, "False or an int >= 0 (horizon)"))
            lstm_path = f"{path}.lstm"
            self.lstm = LSTM(float_spec((width,)), lstm_path, width, horizon=rnn, activation="tanh")
            self.internal_shapes[lstm_path] = self.lstm.internal_shape

    def forward(self, states: dict[str, torch.Tensor]) -> torch.Tensor:
        """Encode ``{name: (B, *shape)}`` into ``(B, output_size)`` (LSTM from zero internals)."""
        x = self._features(states)
        return x if self.lstm is None else self.lstm(x)

    def _features(self, states: dict[str, torch.Tensor]) -> torch.Tensor:
        """The encoders and the dense stack: ``(B, output_size)``."""
        parts = []
        for name, _ in self.specs:
            x = states[name]
            if name in self.encoders:
                x = self.encoders[name](x)
            parts.append(x.reshape(x.shape[0], -1).float())
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return self.mlp(x)

    def step(
        self,
        states: dict[str, torch.Tensor],
        internals: dict[str, torch.Tensor],
        t: int | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One step with the LSTM's internals (as ``LayeredNetwork.step``; needs ``rnn``)."""
        assert self.lstm is not None, "step() needs rnn="
        path = self.lstm.path
        x, following = self.lstm.step(self._features(states), internals[path], t)
        return x, {path: following}
