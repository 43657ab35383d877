"""LayeredNetwork: a list (sequential) or list of lists (branches) of layers, shape-checked."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from forceexp.core.layers import Layer, build_layer
from forceexp.errors import ConfigError
from forceexp.specs import Specs, TensorSpec


def _is_retrieve(spec: Any) -> bool:
    kind = spec.get("type") if isinstance(spec, dict) else spec
    return kind == "retrieve"


def _branches(layers: Any, path: str) -> list[tuple[str, list[Any]]]:
    """``[(branch_path_prefix, layer_specs)]`` for a flat list or a list of lists."""
    if not isinstance(layers, list | tuple) or not layers:
        raise ConfigError(f"{path}: expected a non-empty list of layers or of layer lists")
    nested = [isinstance(item, list | tuple) for item in layers]
    if all(nested):
        out = [(f"{path}[{i}]", list(branch)) for i, branch in enumerate(layers)]
        for prefix, branch in out:
            if not branch:
                raise ConfigError(f"{prefix}: empty layer list")
        return out
    if any(nested):
        raise ConfigError(f"{path}: mix of layers and layer lists; use one or the other")
    return [(path, list(layers))]


class LayeredNetwork(nn.Module):
    """Layers run in order; ``register``/``retrieve`` route named tensors between branches.

    All inner lists run in order, and the running tensor flows from the end of one list into
    the next unless that list starts with ``retrieve``. States are available by name to
    ``retrieve``. With a single state the first layer receives it; with several states the
    first branch must start with ``retrieve`` (there is no silent default input). The output is
    the last layer's output flattened to ``(B, output_size)``.

    Args:
        states: The agent's state specs.
        layers: Layer specs (``[dict(type='dense', size=64), ...]``) or lists of them.
        path: Config path used in errors (``network`` / ``baseline``).
    """

    def __init__(self, states: Specs, layers: list[Any], path: str = "network") -> None:
        super().__init__()
        registered = {name: (spec, f"states.{name}") for name, spec in states.items}
        running: TensorSpec | None = states.values()[0] if len(states) == 1 else None
        modules: list[Layer] = []
        named: dict[str, Layer] = {}  # layer name -> layer, for reuse
        for prefix, branch in _branches(layers, path):
            if running is None and not _is_retrieve(branch[0]):
                raise ConfigError(
                    f"{prefix}: the network has several states ({', '.join(states.names())}) "
                    f"and branch {prefix} does not start with retrieve; add "
                    "dict(type='retrieve', tensors=<state name>) as its first layer"
                )
            for i, spec in enumerate(branch):
                layer = build_layer(spec, running, f"{prefix}[{i}]", registered, named)
                modules.append(layer)
                running = layer.output_spec
        assert running is not None
        if running.type == "int":
            raise ConfigError(
                f"{modules[-1].path}: the network output is an int tensor of shape "
                f"{running.shape}; add an embedding layer"
            )
        self.layers = nn.ModuleList(modules)
        self.output_spec = running
        self.output_size = max(running.size, 1)
        self.internal_shapes = {
            layer.path: layer.internal_shape
            for layer in modules
            if layer.internal_shape is not None
        }

    def forward(self, states: dict[str, torch.Tensor]) -> torch.Tensor:
        """Encode ``{name: (B, *shape)}`` into ``(B, output_size)``."""
        tensors = dict(states)
        x = next(iter(states.values())) if len(states) == 1 else None
        for layer in self.layers:
            x = layer.apply_named(x, tensors)
        assert x is not None
        return x.reshape(x.shape[0], -1).float()

    def step(
        self,
        states: dict[str, torch.Tensor],
        internals: dict[str, torch.Tensor],
        t: int | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One step of a network with internals: features ``(B, output_size)``, next internals.

        Args:
            states: ``{name: (B, *shape)}``.
            internals: ``{layer path: (B, *internal_shape)}`` for every layer keeping internals
                (recurrent layers, deltafier, sequence).
            t: Index of the step in a re-run sequence (PPO's update), for recurrent layers'
                truncated backpropagation (``horizon``); None when acting.
        """
        tensors = dict(states)
        x = next(iter(states.values())) if len(states) == 1 else None
        following = {}
        for layer in self.layers:
            if layer.internal_shape is None:
                x = layer.apply_named(x, tensors)
            else:
                x, following[layer.path] = layer.step(x, internals[layer.path], t)
        assert x is not None
        return x.reshape(x.shape[0], -1).float(), following

    def summary(self) -> str:
        """One line per layer: path, type, output shape, parameter count; then the total."""
        lines = []
        for layer in self.layers:
            count = sum(p.numel() for p in layer.parameters())
            lines.append(
                f"  {layer.path:<20} {type(layer).__name__:<12} "
                f"{layer.output_spec.shape!s:<16} {count:>8}"
            )
        total = sum(p.numel() for p in self.parameters())
        head = f"  {'layer':<20} {'type':<12} {'output shape':<16} {'params':>8}"
        return "\n".join([head, *lines, f"  total parameters: {total}"])
