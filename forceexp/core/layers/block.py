"""Residual block: a shape-preserving sequence of layers whose output is added to its input."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from forceexp.core.layers.base import LAYERS, Layer
from forceexp.core.layers.build import build_layer
from forceexp.errors import ConfigError
from forceexp.specs import TensorSpec


@LAYERS.register("residual")
class Residual(Layer):
    """``x + f(x)`` where ``f`` is a list of layers that must keep the input shape.

    Args:
        input_spec: Float input.
        path: Config path of the layer; inner layers are ``<path>.layers[i]``.
        layers: Layer specs of ``f`` (no register/retrieve inside).
    """

    def __init__(self, input_spec: TensorSpec | None, path: str, layers: list[Any]) -> None:
        super().__init__(input_spec, path)
        spec = self.require_float("residual")
        if not isinstance(layers, list) or not layers:
            raise ConfigError(f"{path}.layers: expected a non-empty list of layer specs")
        modules, running = [], spec
        for i, layer_spec in enumerate(layers):
            layer = build_layer(layer_spec, running, f"{path}.layers[{i}]", {})
            if layer.uses_registry:
                raise ConfigError(f"{path}.layers[{i}]: register/retrieve is not allowed here")
            modules.append(layer)
            running = layer.output_spec
        if running.shape != spec.shape:
            raise ConfigError(
                f"{path}: residual block output shape {running.shape} != input shape {spec.shape}"
            )
        self.layers = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        y = x.float()
        for layer in self.layers:
            y = layer(y)
        return x.float() + y
