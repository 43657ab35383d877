"""Layer groups: ``block`` (a layer list), ``reuse`` (shared weights), ``residual`` (x + f(x))."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from forceexp.core.layers.base import LAYERS, Layer
from forceexp.core.layers.build import Named, build_layer
from forceexp.errors import ConfigError, unknown_name
from forceexp.specs import TensorSpec


@LAYERS.register("block")
class Block(Layer):
    """A list of layers run in order as one layer; give it a ``name`` to ``reuse`` it.

    Inner layers that keep internals (recurrent, deltafier, sequence) are allowed: the block
    then keeps their internals flattened and concatenated in one row of ``internal_shape``.

    Args:
        input_spec: The running tensor's spec.
        path: Config path of the layer; inner layers are ``<path>.layers[i]``.
        layers: Layer specs (no register/retrieve).
        named: Build-time table of named layers (filled by the network).
    """

    uses_named = True

    def __init__(
        self, input_spec: TensorSpec | None, path: str, layers: list[Any], named: Named
    ) -> None:
        super().__init__(input_spec, path)
        self.require_input(type(self).__name__.lower())
        if not isinstance(layers, list | tuple) or not layers:
            raise ConfigError(f"{path}.layers: expected a non-empty list of layer specs")
        modules, running = [], input_spec
        for i, layer_spec in enumerate(layers):
            layer = build_layer(layer_spec, running, f"{path}.layers[{i}]", {}, named)
            if layer.uses_registry:
                raise ConfigError(f"{path}.layers[{i}]: register/retrieve is not allowed here")
            modules.append(layer)
            running = layer.output_spec
        self.layers = nn.ModuleList(modules)
        self.output_spec = running
        self.sizes = [
            0 if layer.internal_shape is None else math.prod(layer.internal_shape)
            for layer in modules
        ]
        if any(self.sizes):
            self.internal_shape = (sum(self.sizes),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layers in order (inner internals from zeros)."""
        return self._run(x) if self.internal_shape is None else self.first_step(x)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def step(
        self, x: torch.Tensor, internals: torch.Tensor, t: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The layers in order, each stateful one on its slice of ``internals``."""
        parts, start = [], 0
        for layer, size in zip(self.layers, self.sizes, strict=True):
            if not size:
                x = layer(x)
                continue
            own = internals[:, start : start + size].reshape(-1, *layer.internal_shape)
            x, following = layer.step(x, own, t)
            parts.append(following.reshape(following.shape[0], -1))
            start += size
        return x, torch.cat(parts, dim=1)


@LAYERS.register("reuse")
class Reuse(Layer):
    """Apply a layer defined earlier (by its ``name``) again, with the same weights.

    A reused layer that keeps internals gets its own internals here (same weights, separate
    state). The layer may belong to another network of the agent (a baseline reusing a policy
    layer): ``share`` then makes it a submodule here too, so this network's parameters (and
    the optimizers over them) include it.

    Args:
        input_spec: Must equal the reused layer's input spec (type and shape).
        path: Config path of the layer.
        layer: Name of a layer (or block) defined earlier in the network.
        named: Build-time table of named layers (filled by the network).
    """

    uses_named = True

    def __init__(self, input_spec: TensorSpec | None, path: str, layer: str, named: Named) -> None:
        super().__init__(input_spec, path)
        spec = self.require_input("reuse")
        if layer not in named:
            raise unknown_name(f"{path}.layer", layer, named, "named layer")
        target = named[layer]
        given, built = (spec.type, spec.shape), target.input_spec
        if built is None or given != (built.type, built.shape):
            raise ConfigError(
                f"{path}: reused layer {layer!r} ({target.path}) was built for input "
                f"{None if built is None else (built.type, built.shape)}; got {given}"
            )
        self.target = (target,)  # a tuple: not a submodule, so the weights are counted once
        self.internal_shape = target.internal_shape
        self.output_spec = target.output_spec

    def share(self) -> None:
        """Register the reused layer (of another network) as a submodule of this one."""
        self.shared = self.target[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reused layer on ``x``."""
        return self.target[0](x)

    def step(
        self, x: torch.Tensor, internals: torch.Tensor, t: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the reused layer on this layer's own internals."""
        return self.target[0].step(x, internals, t)


@LAYERS.register("residual")
class Residual(Block):
    """``x + f(x)`` where ``f`` is a list of layers that must keep the input shape.

    Args:
        input_spec: Float input.
        path: Config path of the layer; inner layers are ``<path>.layers[i]``.
        layers: Layer specs of ``f`` (no register/retrieve inside).
        named: Build-time table of named layers (filled by the network).
    """

    def __init__(
        self, input_spec: TensorSpec | None, path: str, layers: list[Any], named: Named
    ) -> None:
        super().__init__(input_spec, path, layers, named)
        spec = self.require_float("residual")
        if self.output_spec.shape != spec.shape:
            raise ConfigError(
                f"{path}: residual block output shape {self.output_spec.shape} != input shape "
                f"{spec.shape}"
            )

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() + super()._run(x.float())

    def step(
        self, x: torch.Tensor, internals: torch.Tensor, t: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x + f(x)`` with ``f``'s internals."""
        y, following = super().step(x.float(), internals, t)
        return x.float() + y, following
