"""Gymnasium spaces <-> forceexp specs, and values both ways.

A space is flattened into named components: ``Dict`` keys become names (nested ones joined with
``_``), ``Tuple`` entries become ``<parent>_<i>`` and a ``MultiDiscrete`` with unequal sizes becomes
one int component per element (``<parent>_<i>``). A space that is one component on its own (Box,
Discrete, MultiBinary, MultiDiscrete with equal sizes) maps to one unnamed spec. Integer offsets
(``Discrete(start=...)``, ``MultiDiscrete(start=...)``, an int ``Box`` with ``low != 0``) are
removed on the way in and added back on the way out, so forceexp sees values ``0..num_values-1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forceexp.errors import ConfigError, message
from forceexp.specs import _as_bound

_SUPPORTED = "a Box, Discrete, MultiDiscrete, MultiBinary, Dict or Tuple space"


@dataclass
class _Node:
    """One node of a flattened space: a leaf component, or a Dict/Tuple/split MultiDiscrete."""

    kind: str  # 'leaf' | 'dict' | 'tuple' | 'split'
    space: Any
    name: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    offset: Any = 0
    children: list[tuple[Any, _Node]] = field(default_factory=list)
    scalar: Any = None  # a Discrete leaf's NumPy scalar type (what its ``sample()`` returns)


def _join(parent: str | None, key: Any, default: str) -> str:
    return f"{parent or default}_{key}" if parent is not None or isinstance(key, int) else str(key)


def _leaf(space: Any, name: str, path: str) -> _Node:
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        shape = tuple(space.shape)
        if np.issubdtype(space.dtype, np.floating):
            spec: dict[str, Any] = {"type": "float", "shape": shape, **_float_bounds(space)}
            return _Node("leaf", space, name, spec)
        low, high = np.asarray(space.low), np.asarray(space.high)
        if np.all(low == low.flat[0]) and np.all(high == high.flat[0]):
            num = int(high.flat[0]) - int(low.flat[0]) + 1
            spec = {"type": "int", "shape": shape, "num_values": num}
            return _Node("leaf", space, name, spec, int(low.flat[0]))
        return _Node("leaf", space, name, {"type": "int", "shape": shape})
    if isinstance(space, spaces.Discrete):
        spec = {"type": "int", "shape": (), "num_values": int(space.n)}
        return _Node("leaf", space, name, spec, int(space.start), scalar=space.dtype.type)
    if isinstance(space, spaces.MultiBinary):
        return _Node("leaf", space, name, {"type": "bool", "shape": tuple(np.atleast_1d(space.n))})
    if isinstance(space, spaces.MultiDiscrete):
        nvec = np.asarray(space.nvec)
        spec = {"type": "int", "shape": tuple(nvec.shape), "num_values": int(nvec.flat[0])}
        return _Node("leaf", space, name, spec, np.asarray(space.start))
    raise ConfigError(message(path, type(space).__name__, _SUPPORTED))


def _float_bounds(space: Any) -> dict[str, Any]:
    low, high = _as_bound("low", space.low), _as_bound("high", space.high)
    return {"min_value": low, "max_value": high} if low is not None and high is not None else {}


def _build(space: Any, name: str | None, default: str) -> _Node:
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        items = [
            (key, _build(sub, _join(name, key, default), default)) for key, sub in space.items()
        ]
        return _Node("dict", space, name or "", children=items)
    if isinstance(space, spaces.Tuple):
        items = [(i, _build(sub, _join(name, i, default), default)) for i, sub in enumerate(space)]
        return _Node("tuple", space, name or "", children=items)
    if isinstance(space, spaces.MultiDiscrete):
        nvec, start = np.asarray(space.nvec), np.asarray(space.start)
        if not np.all(nvec == nvec.flat[0]):
            children = []
            for i, (n, s) in enumerate(zip(nvec.flat, start.flat, strict=True)):
                spec = {"type": "int", "num_values": int(n)}
                child = _join(name, i, default)
                children.append((i, _Node("leaf", None, child, spec, int(s))))
            return _Node("split", space, name or "", children=children)
    return _leaf(space, name or default, name or default)


class SpaceMap:
    """A Gymnasium space flattened into forceexp specs, with value conversion both ways.

    Args:
        space: The Gymnasium space.
        default: Name of an unnamed component (``'state'`` or ``'action'``).
        exclude: Top-level ``Dict`` keys to leave out (e.g. ``'action_mask'`` entries).
    """

    def __init__(self, space: Any, default: str, exclude: Sequence[str] = ()) -> None:
        from gymnasium import spaces

        self.space, self.default = space, default
        self.exclude = tuple(exclude)
        if exclude and isinstance(space, spaces.Dict):
            space = spaces.Dict({k: v for k, v in space.items() if k not in self.exclude})
        self.root = _build(space, None, default)
        self.single = self.root.kind == "leaf"
        self.leaves: dict[str, _Node] = {}
        self._collect(self.root)

    def _collect(self, node: _Node) -> None:
        if node.kind == "leaf":
            if node.name in self.leaves:
                raise ConfigError(f"{self.default}s: two space entries both map to {node.name!r}")
            self.leaves[node.name] = node
        for _, child in node.children:
            self._collect(child)

    def specs(self) -> dict[str, Any]:
        """One spec dict (single component) or a dict of named spec dicts."""
        if self.single:
            return dict(self.root.spec)
        return {name: dict(node.spec) for name, node in self.leaves.items()}

    def flatten(self, value: Any) -> Any:
        """A Gymnasium value -> an array (single) or a ``{name: array}`` dict."""
        if self.single:
            return _to_forceexp(self.root, value)
        out: dict[str, np.ndarray] = {}
        self._flatten(self.root, value, out)
        return out

    def _flatten(self, node: _Node, value: Any, out: dict[str, np.ndarray]) -> None:
        if node.kind == "leaf":
            out[node.name] = _to_forceexp(node, value)
        elif node.kind == "split":
            flat = np.asarray(value).reshape(-1)
            for i, child in node.children:
                out[child.name] = np.asarray(int(flat[i]) - child.offset, dtype=np.int64)
        else:
            for key, child in node.children:
                self._flatten(child, value[key], out)

    def unflatten(self, value: Any) -> Any:
        """An array (single) or a ``{name: array}`` dict from ``Agent.act`` -> a Gymnasium value."""
        if self.single:
            return _to_gym(self.root, value)
        if not isinstance(value, Mapping):
            expected = f"a dict with keys {list(self.leaves)}"
            raise ConfigError(message(f"{self.default}s", type(value).__name__, expected))
        missing = [name for name in self.leaves if name not in value]
        if missing:
            raise ConfigError(f"{self.default}s: missing {missing}; got keys {sorted(value)}")
        return self._unflatten(self.root, value)

    def _unflatten(self, node: _Node, value: Mapping[str, Any]) -> Any:
        if node.kind == "leaf":
            return _to_gym(node, value[node.name])
        if node.kind == "split":
            flat = [int(np.asarray(value[c.name])) + c.offset for _, c in node.children]
            return np.asarray(flat, dtype=node.space.dtype).reshape(node.space.shape)
        parts = [(key, self._unflatten(child, value)) for key, child in node.children]
        return dict(parts) if node.kind == "dict" else tuple(part for _, part in parts)

    def masks(self, mask: Any) -> dict[str, np.ndarray]:
        """Map a Gymnasium-style action mask onto ``<action>_mask`` entries (bool arrays).

        Accepts an array for a single int action (a tuple of per-element arrays for a
        MultiDiscrete), a tuple/list of arrays for a split MultiDiscrete, or a dict keyed by action
        name.
        """
        if isinstance(mask, Mapping):
            return {f"{name}_mask": _bool_mask(name, m) for name, m in mask.items()}
        if self.single:
            if isinstance(mask, tuple | list) and mask and np.ndim(mask[0]) >= 1:
                shape = (*self.root.spec["shape"], -1)
                return {f"{self.default}_mask": _bool_mask(self.default, mask).reshape(shape)}
            return {f"{self.default}_mask": _bool_mask(self.default, mask)}
        if self.root.kind == "split" and isinstance(mask, tuple | list):
            names = [child.name for _, child in self.root.children]
            if len(mask) != len(names):
                raise ConfigError(f"action_mask: {len(mask)} masks for actions {names}")
            return {f"{n}_mask": _bool_mask(n, m) for n, m in zip(names, mask, strict=True)}
        raise ConfigError(
            f"action_mask: cannot map a {type(mask).__name__} mask onto actions "
            f"{list(self.leaves)}; give a dict keyed by action name"
        )


def spec_from_space(space: Any, path: str = "space") -> dict[str, Any]:
    """Map a Gymnasium space onto a spec dict (or a dict of named spec dicts).

    Supports Box, Discrete (any ``start``), MultiDiscrete (equal sizes: one int component; unequal
    sizes: ``<path>_<i>`` components), MultiBinary, Dict and Tuple (see ``SpaceMap``, which also
    converts values both ways).
    """
    return SpaceMap(space, path).specs()


def _bool_mask(name: str, mask: Any) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iu" or not np.isin(arr, (0, 1)).all():
        raise ConfigError(message(f"{name}_mask", arr.dtype.name, "a boolean (or 0/1) mask"))
    return arr.astype(bool)


def _to_forceexp(node: _Node, value: Any) -> np.ndarray:
    kind = node.spec["type"]
    arr = np.asarray(value)
    if kind == "float":
        return arr.astype(np.float32, copy=False)
    if kind == "bool":
        return arr.astype(bool, copy=False)
    return (arr.astype(np.int64) - node.offset).astype(np.int64)


def _to_gym(node: _Node, value: Any) -> Any:
    if node.scalar is not None:
        return node.scalar(int(np.asarray(value)) + node.offset)
    arr = np.asarray(value)
    shape, dtype = node.space.shape, node.space.dtype
    if node.spec["type"] == "int":
        arr = arr.astype(np.int64) + node.offset
    return arr.astype(dtype).reshape(shape)
