"""Layer groups: ``block`` (a layer list), ``reuse`` (shared weights), ``residual`` (x + f(x))."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from forceexp.core.layers.base import LAYERS, Layer
from forceexp.core.layers.build import Named, build_layer
from forceexp.errors import ConfigError, unknown_name
from forceexp.specs import TensorSpec


def build_sequence(
    layers: Any, spec: TensorSpec | None, path: str, named: Named
) -> tuple[nn.ModuleList, TensorSpec]:
    """Build ``layers`` in order from ``spec``; no register/retrieve or stateful layers inside."""
    if not isinstance(layers, list | tuple) or not layers:
        raise ConfigError(f"{path}.layers: expected a non-empty list of layer specs")
    modules, running = [], spec
    for i, layer_spec in enumerate(layers):
        layer = build_layer(layer_spec, running, f"{path}.layers[{i}]", {}, named)
        if layer.uses_registry:
            raise ConfigError(f"{path}.layers[{i}]: register/retrieve is not allowed here")
        if layer.internal_shape is not None:
            raise ConfigError(
                f"{path}.layers[{i}]: {type(layer).__name__} keeps internals between steps; "
                "put it in the network's layer list, not inside a block"
            )
        modules.append(layer)
        running = layer.output_spec
    return nn.ModuleList(modules), running


@LAYERS.register("block")
class Block(Layer):
    """A list of layers run in order as one layer; give it a ``name`` to ``reuse`` it.

    Args:
        input_spec: The running tensor's spec.
        path: Config path of the layer; inner layers are ``<path>.layers[i]``.
        layers: Layer specs (no register/retrieve, no recurrent/temporal layers).
        named: Build-time table of named layers (filled by the network).
    """

    uses_named = True

    def __init__(
        self, input_spec: TensorSpec | None, path: str, layers: list[Any], named: Named
    ) -> None:
        super().__init__(input_spec, path)
        self.require_input("block")
        self.layers, self.output_spec = build_sequence(layers, input_spec, path, named)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layers in order."""
        for layer in self.layers:
            x = layer(x)
        return x


@LAYERS.register("reuse")
class Reuse(Layer):
    """Apply a layer defined earlier (by its ``name``) again, with the same weights.

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
        if target.internal_shape is not None:
            raise ConfigError(
                f"{path}.layer: {layer!r} keeps internals between steps and cannot be reused"
            )
        if target.uses_registry:
            raise ConfigError(f"{path}.layer: {layer!r} is a register/retrieve layer")
        given = (spec.type == "int", spec.shape)
        expected = target.input_spec
        if expected is None or given != (expected.type == "int", expected.shape):
            raise ConfigError(
                f"{path}: reused layer {layer!r} ({target.path}) was built for input "
                f"{None if expected is None else (expected.type, expected.shape)}; "
                f"got {(spec.type, spec.shape)}"
            )
        self.name = layer
        self.target = (target,)  # a tuple: not a submodule, so the weights are counted once
        self.output_spec = target.output_spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reused layer on ``x``."""
        return self.target[0](x)


@LAYERS.register("residual")
class Residual(Layer):
    """``x + f(x)`` where ``f`` is a list of layers that must keep the input shape.

    Args:
        input_spec: Float input.
        path: Config path of the layer; inner layers are ``<path>.layers[i]``.
        layers: Layer specs of ``f`` (no register/retrieve inside).
        named: Build-time table of named layers (filled by the network).
    """

    uses_named = True

    def __init__(
        self, input_spec: TensorSpec | None, path: str, layers: list[Any], named: Named
    ) -> None:
        super().__init__(input_spec, path)
        spec = self.require_float("residual")
        self.layers, running = build_sequence(layers, spec, path, named)
        if running.shape != spec.shape:
            raise ConfigError(
                f"{path}: residual block output shape {running.shape} != input shape {spec.shape}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        y = x.float()
        for layer in self.layers:
            y = layer(y)
        return x.float() + y
