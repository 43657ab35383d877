"""Preprocessing pipelines: layer lists the agent runs on states and rewards before learning.

Tensorforce's ``state_preprocessing`` and ``reward_processing``. A pipeline is a list of
weight-free layers (clipping, linear/exponential normalization, image, deltafier, sequence, ...)
run on one input before any network sees it; the networks, memories and rollouts are built for
and store the pipeline's output. Temporal layers (deltafier, sequence) keep one row of
internals per parallel slot (zeroed at the slot's episode start); those rows and the running
statistics of exponential normalization are buffers of the module, so they are saved with the
agent's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from forceexp.core.layers import build_layer
from forceexp.errors import ConfigError
from forceexp.specs import Specs, TensorSpec

Tensors = dict[str, torch.Tensor]
_TYPES = ("bool", "int", "float")
#: key of the preprocessing internals inside the internals dict of independent acts
INTERNALS_KEY = "state_preprocessing"


class Pipeline(nn.Module):
    """Layers run in order on one input, with per-slot internals for temporal layers.

    Args:
        spec: Spec of the input (a state, or the scalar reward).
        layers: One layer spec or a list of them (no register/retrieve, no trainable weights).
        path: Config path used in errors (``agent.state_preprocessing.<state>``).
        slots: Parallel slots: rows of internals kept per temporal layer.

    Raises:
        ConfigError: An empty list, a layer with weights or named tensors, or a bad layer.
    """

    def __init__(self, spec: TensorSpec, layers: Any, path: str, slots: int) -> None:
        super().__init__()
        specs = list(layers) if isinstance(layers, list | tuple) else [layers]
        if not specs:
            raise ConfigError(f"{path}: empty layer list; give None for no preprocessing")
        modules, running = [], spec
        for i, layer_spec in enumerate(specs):
            layer = build_layer(layer_spec, running, f"{path}[{i}]", {}, None)
            kind = type(layer).__name__
            if layer.uses_registry or layer.uses_named:
                raise ConfigError(f"{path}[{i}]: {kind} routes named tensors; not a preprocessing")
            if any(True for _ in layer.parameters()):
                raise ConfigError(
                    f"{path}[{i}]: {kind} has trainable weights; preprocessing layers have none "
                    "(put it in the network instead)"
                )
            modules.append(layer)
            running = layer.output_spec
        self.layers = nn.ModuleList(modules)
        self.output_spec: TensorSpec = running
        self.temporal = [i for i, layer in enumerate(modules) if layer.internal_shape is not None]
        for i in self.temporal:
            self.register_buffer(f"internals{i}", torch.zeros((slots, *modules[i].internal_shape)))

    def internals(self) -> list[torch.Tensor]:
        """The per-slot internals ``(slots, *internal_shape)`` of each temporal layer."""
        return [getattr(self, f"internals{i}") for i in self.temporal]

    def zero_internals(self, rows: int) -> list[torch.Tensor]:
        """Internals of ``rows`` rows at an episode start."""
        return [torch.zeros((rows, *x.shape[1:]), device=x.device) for x in self.internals()]

    def run(
        self, x: torch.Tensor, internals: list[torch.Tensor], update: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(B, *in) -> (B, *out)`` from given internals; also the next internals.

        ``update`` lets running statistics (exponential normalization) learn from ``x``.
        """
        self.train(update)
        given, following = iter(internals), []
        for layer in self.layers:
            if layer.internal_shape is None:
                x = layer(x)
            else:
                x, nxt = layer.step(x, next(given))
                following.append(nxt)
        return x, following

    def forward(self, x: torch.Tensor, slots: torch.Tensor, update: bool) -> torch.Tensor:
        """Process rows of ``slots`` from their internals (kept for them only if ``update``)."""
        y, following = self.run(x, [h[slots] for h in self.internals()], update)
        if update:
            for h, nxt in zip(self.internals(), following, strict=True):
                h[slots] = nxt
        return y

    def reset(self, slots: np.ndarray | None = None) -> None:
        """Zero the internals of ``slots`` (None: all): their episodes start anew."""
        for h in self.internals():
            h[slice(None) if slots is None else torch.as_tensor(slots, device=h.device)] = 0.0

    def episodes(self, x: torch.Tensor, terminal: np.ndarray) -> torch.Tensor:
        """Process whole episodes ``(T, *in)`` step by step, fresh internals after terminals."""
        if not self.temporal:
            return self.run(x, [], True)[0]
        internals, out = self.zero_internals(1), []
        for t in range(x.shape[0]):
            y, internals = self.run(x[t : t + 1], internals, True)
            out.append(y)
            if terminal[t]:
                internals = self.zero_internals(1)
        return torch.cat(out)


def per_state_layers(spec: Any, states: Specs) -> dict[str, Any]:
    """Each state's layer spec(s) under Tensorforce's ``state_preprocessing`` rules.

    ``'linear_normalization'`` (Tensorforce's default) applies to bounded float states only; a
    dict keyed by state names and/or types (``'float'``, ...) gives per-state pipelines (a
    name before its type; missing states and None values are unprocessed); any other spec (a
    layer name, dict or list) applies to every state.
    """
    if spec in (None, False):
        return {}
    if spec == "linear_normalization":
        return {name: [spec] for name, s in states.items if s.type == "float" and s.is_bounded}
    keyed = isinstance(spec, Mapping) and all(k in states or k in _TYPES for k in spec)
    if not keyed:
        return dict.fromkeys(states.names(), spec)
    out = {}
    for name, state in states.items:
        layers = spec.get(name, spec.get(state.type))
        if layers is not None:
            out[name] = layers
    return out


class StatePreprocessing(nn.Module):
    """Per-state pipelines; states without one pass through unchanged.

    Args:
        spec: Tensorforce's ``state_preprocessing`` (see ``per_state_layers``).
        states: The environment's state specs (what ``act`` receives).
        slots: Parallel slots.
        path: Config path used in errors.
    """

    def __init__(
        self, spec: Any, states: Specs, slots: int, path: str = "agent.state_preprocessing"
    ) -> None:
        super().__init__()
        layers = per_state_layers(spec, states)
        self.pipelines = nn.ModuleDict(
            {
                name: Pipeline(states[name], item, f"{path}.{name}", slots)
                for name, item in layers.items()
            }
        )
        items = tuple(
            (name, self.pipelines[name].output_spec if name in self.pipelines else s)
            for name, s in states.items
        )
        #: what the networks, memories and rollouts see
        self.output_specs = Specs(items, states.single)
        self.temporal = any(p.temporal for p in self.pipelines.values())

    def forward(self, states: Tensors, slots: np.ndarray, update: bool) -> Tensors:
        """Processed states of ``slots``; ``update`` advances their internals and statistics."""
        index = torch.as_tensor(slots, device=next(iter(states.values())).device)
        out = dict(states)
        for name, pipeline in self.pipelines.items():
            out[name] = pipeline(states[name], index, update)
        return out

    def independent(self, states: Tensors, given: Mapping[str, Any]) -> tuple[Tensors, dict]:
        """Process states of independent rows from internals carried by the caller.

        ``given`` is the internals dict of ``act(..., internals=..., independent=True)``; its
        ``INTERNALS_KEY`` entry (absent at an episode start) holds these pipelines' rows.
        Returns the processed states and that entry's next value.
        """
        rows = next(iter(states.values())).shape[0]
        carried = given.get(INTERNALS_KEY) or {}
        out, following = dict(states), {}
        for name, pipeline in self.pipelines.items():
            internals = pipeline.zero_internals(rows)
            for j, x in enumerate(carried.get(name, ())):
                internals[j] = torch.as_tensor(np.asarray(x, np.float32)).reshape(
                    internals[j].shape
                )
            out[name], nxt = pipeline.run(states[name], internals, False)
            if nxt:
                following[name] = [x.cpu().numpy() for x in nxt]
        return out, following

    def reset(self, slots: np.ndarray | None = None) -> None:
        """Zero the internals of ``slots`` (None: all)."""
        for pipeline in self.pipelines.values():
            pipeline.reset(slots)

    def episodes(self, states: Tensors, terminal: np.ndarray) -> Tensors:
        """Processed states of whole episodes ``{name: (T, ...)}`` (``Agent.experience``)."""
        out = dict(states)
        for name, pipeline in self.pipelines.items():
            out[name] = pipeline.episodes(states[name], terminal)
        return out


class RewardProcessing(Pipeline):
    """Tensorforce's ``reward_processing``: a pipeline on the scalar reward, per slot.

    Args:
        spec: A layer spec or list of them; the output must stay one float per step.
        slots: Parallel slots.
        path: Config path used in errors.
    """

    def __init__(self, spec: Any, slots: int, path: str = "agent.reward_processing") -> None:
        super().__init__(TensorSpec("float", ()), spec, path, slots)
        if self.output_spec.shape != ():
            raise ConfigError(
                f"{path}: the pipeline turns the scalar reward into shape "
                f"{self.output_spec.shape}; expected a scalar (shape ())"
            )

    def process(self, rewards: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Processed rewards ``(B,)`` of ``slots`` (their internals advance)."""
        x = torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            out = self(x, torch.as_tensor(slots, device=self.device), True)
        return out.cpu().numpy().astype(np.float32, copy=False)

    def process_episodes(self, rewards: np.ndarray, terminal: np.ndarray) -> np.ndarray:
        """Processed rewards of whole episodes ``(T,)``."""
        x = torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            out = self.episodes(x, terminal)
        return out.cpu().numpy().astype(np.float32, copy=False)

    @property
    def device(self) -> torch.device:
        """Where the internals live (the CPU without temporal layers)."""
        internals = self.internals()
        return internals[0].device if internals else torch.device("cpu")


def load_preprocessing(module: nn.Module, state: dict[str, Any]) -> None:
    """Load saved buffers; internals saved for another number of slots start from zeros."""
    own = module.state_dict()
    kept = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    module.load_state_dict({**own, **kept})
