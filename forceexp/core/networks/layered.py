"""LayeredNetwork: a list (sequential) or list of lists (branches) of layers, shape-checked."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from forceexp.core.layers import Layer, build_layer
from forceexp.core.layers.block import Reuse
from forceexp.core.layers.build import Named
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
        shared: Named layers of the agent's other networks (the policy's, for the baseline),
            which ``reuse`` may name too: they are shared, same parameters.
        single_output: False: also output every registered tensor named ``*-embedding``
            (Tensorforce's per-action ``<action>-embedding``, ``action-embedding`` for a single
            action, and the baseline's ``state-embedding``); ``output_slices`` then says where
            each lies in the features, ``'embedding'`` being the last layer's output.
    """

    def __init__(
        self,
        states: Specs,
        layers: list[Any],
        path: str = "network",
        shared: Named | None = None,
        single_output: bool = True,
    ) -> None:
        super().__init__()
        registered = {name: (spec, f"states.{name}") for name, spec in states.items}
        running: TensorSpec | None = states.values()[0] if len(states) == 1 else None
        modules: list[Layer] = []
        named: Named = dict(shared or {})  # layer name -> layer, for reuse
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
        #: this network's named layers (what another network of the agent may reuse)
        self.named = {name: layer for name, layer in named.items() if name not in (shared or {})}
        foreign = {id(layer) for layer in (shared or {}).values()}
        for module in list(self.modules()):
            if isinstance(module, Reuse) and id(module.target[0]) in foreign:
                module.share()
        self.output_spec = running
        self.output_size = max(running.size, 1)
        #: registered tensors output next to the last layer's (``single_output=False``)
        self.outputs = [] if single_output else [n for n in registered if n.endswith("-embedding")]
        self.output_slices: dict[str, slice] | None = None
        if self.outputs:
            self.output_slices = {"embedding": slice(0, self.output_size)}
            for name in self.outputs:
                size = max(registered[name][0].size, 1)
                self.output_slices[name] = slice(self.output_size, self.output_size + size)
                self.output_size += size
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
        return self._features(x, tensors)

    def _features(self, x: torch.Tensor, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, output_size)``: the last output, then the ``outputs`` tensors, flattened."""
        if not self.outputs:
            return x.reshape(x.shape[0], -1).float()
        parts = [x, *(tensors[name] for name in self.outputs)]
        return torch.cat([part.reshape(x.shape[0], -1).float() for part in parts], dim=1)

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
        return self._features(x, tensors), following

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
