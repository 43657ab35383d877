"""Register and retrieve: name the running tensor, or replace it by named tensors (aggregated)."""

from __future__ import annotations

from typing import Literal

import torch

from forceexp.core.layers.base import LAYERS, Layer, Tensors
from forceexp.errors import ConfigError, unknown_name
from forceexp.specs import TensorSpec

Aggregation = Literal["concat", "sum", "product", "stack"]
AGGREGATIONS = ("concat", "product", "stack", "sum")
Registered = dict[str, tuple[TensorSpec, str]]  # name -> (spec, path that registered it)


@LAYERS.register("register")
class Register(Layer):
    """Store the running tensor under ``tensor`` (identity on the running tensor).

    Args:
        input_spec: The running tensor's spec.
        path: Config path of the layer.
        tensor: Name to register; must not be a state name or registered before.
        registered: Build-time table of named specs (filled by the network).
    """

    uses_registry = True

    def __init__(
        self, input_spec: TensorSpec | None, path: str, tensor: str, registered: Registered
    ) -> None:
        super().__init__(input_spec, path)
        self.require_input("register")
        if not isinstance(tensor, str) or not tensor:
            raise ConfigError(f"{path}.tensor: {tensor!r} is invalid; expected a non-empty name")
        if tensor in registered:
            first = registered[tensor][1]
            raise ConfigError(f"{path}: tensor {tensor!r} is registered twice (first by {first})")
        registered[tensor] = (self.output_spec, path)  # type: ignore[assignment]
        self.tensor = tensor

    def apply_named(self, x: torch.Tensor | None, tensors: Tensors) -> torch.Tensor:
        """Store ``x`` in ``tensors`` and pass it on."""
        tensors[self.tensor] = x  # type: ignore[assignment]
        return x  # type: ignore[return-value]


@LAYERS.register("retrieve")
class Retrieve(Layer):
    """Replace the running tensor by one named tensor, or several aggregated into one.

    Args:
        input_spec: The running tensor's spec (ignored).
        path: Config path of the layer.
        tensors: A state or registered name, or a list of names.
        aggregation: How to combine several tensors: ``concat`` along ``axis``; ``stack`` on a
            new ``axis`` (identical shapes); ``sum`` / ``product`` element-wise (equal rank,
            each axis equal or 1).
        axis: Non-batch axis for ``concat`` / ``stack`` (negative counts from the end).
        registered: Build-time table of named specs (filled by the network).
    """

    uses_registry = True

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        tensors: str | list[str],
        registered: Registered,
        aggregation: Aggregation = "concat",
        axis: int = 0,
    ) -> None:
        super().__init__(input_spec, path)
        names = [tensors] if isinstance(tensors, str) else list(tensors)
        if not names:
            raise ConfigError(f"{path}.tensors: expected a name or a non-empty list of names")
        for name in names:
            if name not in registered:
                raise unknown_name(f"{path}.tensors", name, registered, "tensor")
        self.names, self.aggregation = names, aggregation
        specs = [registered[name][0] for name in names]
        self.output_spec, self.axis = self._aggregate_spec(specs, aggregation, axis)

    def _aggregate_spec(
        self, specs: list[TensorSpec], aggregation: str, axis: int
    ) -> tuple[TensorSpec, int]:
        if aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"{self.path}.aggregation: {aggregation!r} is invalid; "
                f"expected one of {', '.join(AGGREGATIONS)}"
            )
        if len(specs) == 1:
            return specs[0], 0
        shapes = ", ".join(f"{n} {s.shape}" for n, s in zip(self.names, specs, strict=True))
        if len({s.type for s in specs}) > 1:
            raise ConfigError(f"{self.path}: cannot aggregate tensors of mixed types: {shapes}")
        if len({len(s.shape) for s in specs}) > 1:
            raise ConfigError(f"{self.path}: {aggregation} over different ranks: {shapes}")
        if aggregation in ("sum", "product"):
            return self._broadcast_spec(specs, aggregation, shapes), 0
        rank = len(specs[0].shape)
        limit = rank + (aggregation == "stack")
        if not -limit <= axis < limit:
            raise ConfigError(
                f"{self.path}.axis: {axis} is out of range for {aggregation} of rank {rank}"
            )
        axis %= limit
        first = specs[0]
        if aggregation == "stack":
            if len({s.shape for s in specs}) > 1:
                raise ConfigError(f"{self.path}: stack over mismatched shapes: {shapes}")
            return TensorSpec(
                first.type, (*first.shape[:axis], len(specs), *first.shape[axis:])
            ), axis
        if len({s.shape[:axis] + s.shape[axis + 1 :] for s in specs}) > 1:
            raise ConfigError(
                f"{self.path}: concat on axis {axis} over mismatched shapes: {shapes}"
            )
        shape = list(first.shape)
        shape[axis] = sum(s.shape[axis] for s in specs)
        return TensorSpec(first.type, tuple(shape)), axis

    def _broadcast_spec(self, specs: list[TensorSpec], aggregation: str, shapes: str) -> TensorSpec:
        out = []
        for dims in zip(*(s.shape for s in specs), strict=True):
            if len(set(dims) - {1}) > 1:
                raise ConfigError(f"{self.path}: {aggregation} over mismatched shapes: {shapes}")
            out.append(max(dims))
        return TensorSpec("float", tuple(out))

    def apply_named(self, x: torch.Tensor | None, tensors: Tensors) -> torch.Tensor:
        """Return the named tensor, or the aggregation of several (``(B, *out)``)."""
        parts = [tensors[name] for name in self.names]
        if len(parts) == 1:
            return parts[0]
        if self.aggregation == "concat":
            return torch.cat(parts, dim=self.axis + 1)
        if self.aggregation == "stack":
            return torch.stack(parts, dim=self.axis + 1)
        stacked = torch.stack(torch.broadcast_tensors(*(p.float() for p in parts)), dim=0)
        return stacked.sum(0) if self.aggregation == "sum" else stacked.prod(0)
