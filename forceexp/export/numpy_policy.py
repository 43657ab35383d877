"""Run a policy exported with ``agent.save(directory, format='numpy_policy')``: NumPy only.

This file imports nothing but NumPy and the standard library: copy it next to the exported
``<name>.policy.json`` and ``<name>.policy.npz`` and act without forceexp or torch::

    from numpy_policy import NumpyPolicy

    policy = NumpyPolicy.load("exported/agent.policy.json")
    action = policy.act(state)  # or a batch, or a dict of named states (and ``<action>_mask``)

Actions are the deterministic ones ``agent.act(states, independent=True, deterministic=True)``
returns: state normalisation, greedy / mean actions and the environment-scale mapping of
bounded float actions are part of the export.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

FORMAT, VERSION = "forceexp.numpy_policy", 1
_BETA_EPS = 1e-6


def _activation(name: str, x: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))
    if name == "silu":
        return x / (1.0 + np.exp(-x))
    raise ValueError(f"unknown activation {name!r} in the exported policy")


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


class NumpyPolicy:
    """An exported deterministic policy.

    Args:
        architecture: The parsed ``.policy.json``.
        weights: The arrays of the ``.policy.npz`` by key.
    """

    def __init__(self, architecture: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        if architecture.get("format") != FORMAT or architecture.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} version {VERSION} file")
        self.spec = architecture
        self.w = {key: np.asarray(value, dtype=np.float32) for key, value in weights.items()}
        self.states = architecture["states"]
        self.single_state = len(self.states) == 1 and self.states[0]["input"] == "state"
        self.single_action = list(architecture["outputs"].values()) == ["action"]

    @classmethod
    def load(cls, path: str | Path) -> NumpyPolicy:
        """Load ``<name>.policy.json`` and the ``.npz`` it names (checking its SHA-256)."""
        path = Path(path)
        if path.suffix == ".npz":
            path = path.with_suffix(".json")
        architecture = json.loads(path.read_text())
        weights_path = path.parent / architecture["weights"]
        data = weights_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != architecture["sha256"]:
            raise ValueError(f"{weights_path}: SHA-256 does not match {path.name}; file damaged?")
        with np.load(weights_path, allow_pickle=False) as npz:
            weights = {key: npz[key] for key in npz.files}
        return cls(architecture, weights)

    def act(self, states: Any, masks: dict[str, Any] | None = None) -> Any:
        """Deterministic env-scale actions for one state or a batch.

        Args:
            states: An array (one unnamed state, or a batch on a leading axis) or a dict of
                named states, optionally with ``<action>_mask`` entries (True = allowed).
            masks: Masks by ``<action>_mask`` name (or action name), as an alternative.

        Returns:
            One array (single unnamed action) or a dict, batched like the input.
        """
        values = dict(states) if isinstance(states, dict) else {"state": states}
        given = {**{k: values.pop(k) for k in list(values) if k in self.spec["masks"]}}
        given.update(masks or {})
        first = self.states[0]
        batched = np.ndim(values[first["input"]]) == len(first["shape"]) + 1
        x = self._features(values, batched)
        actions: dict[str, np.ndarray] = {}
        for head in self.spec["heads"]:
            actions.update(self._head(head, x, given, batched))
        outputs = self.spec["outputs"]
        if not batched:
            actions = {name: a[0] for name, a in actions.items()}
        if self.single_action:
            return actions[next(iter(outputs))]
        return {outputs[name]: a for name, a in actions.items()}

    def _features(self, values: dict[str, Any], batched: bool) -> np.ndarray:
        """Normalised, concatenated states through the dense layers ``(B, F)``."""
        parts = []
        for state in self.states:
            x = np.asarray(values[state["input"]], dtype=np.float32)
            x = x if batched else x[None]
            norm = self.spec["normalize"].get(state["name"])
            if norm is not None:
                scale = np.sqrt(self.w[norm["var"]] + np.float32(norm["epsilon"]))
                x = np.clip((x - self.w[norm["mean"]]) / scale, -norm["clip"], norm["clip"])
            parts.append(x.reshape(x.shape[0], -1))
        x = np.concatenate(parts, 1) if len(parts) > 1 else parts[0]
        for layer in self.spec["layers"]:
            x = _activation(
                layer["activation"], x @ self.w[layer["weight"]] + self.w[layer["bias"]]
            )
        return x.astype(np.float32, copy=False)

    def _mask(self, name: str, given: dict[str, Any]) -> np.ndarray | None:
        for key, action in self.spec["masks"].items():
            if action == name and (key in given or name in given):
                return np.asarray(given[key] if key in given else given[name], dtype=bool)
        return None

    def _head(
        self, head: dict[str, Any], x: np.ndarray, given: dict[str, Any], batched: bool
    ) -> dict[str, np.ndarray]:
        out = x @ self.w[head["weight"]] + self.w[head["bias"]]
        kind = head.get("kind")
        if kind == "tanh_scaled":
            low, high = self.w[head["low"]], self.w[head["high"]]
            scaled = low + (np.clip(np.tanh(out), -1.0, 1.0) + 1.0) * 0.5 * (high - low)
            parts = np.split(scaled.astype(np.float32), np.cumsum(head["sizes"])[:-1], axis=1)
            return {
                name: part.reshape(-1, *shape)
                for name, part, shape in zip(head["names"], parts, head["shapes"], strict=True)
            }
        name, shape = head["name"], tuple(head["shape"])
        if kind == "argmax":
            return {name: self._argmax(head, x, out, self._mask(name, given), batched)}
        if kind == "bernoulli":
            return {name: out.reshape(-1, *shape) > 0}
        low, high = self.w[head["low"]], self.w[head["high"]]
        if kind == "beta":
            params = (_softplus(out) + 1.0).reshape(-1, 2, *shape)
            unit = np.clip(params[:, 0] / (params[:, 0] + params[:, 1]), _BETA_EPS, 1 - _BETA_EPS)
            return {name: (low + unit * (high - low)).astype(np.float32)}
        mean = out.reshape(-1, *shape)
        if head["bounding"] == "clip":
            mean = np.maximum(np.minimum(mean, high), low)
        elif head["bounding"] == "squash":
            mean = low + (np.tanh(mean) + 1.0) * 0.5 * (high - low)
        return {name: mean.astype(np.float32, copy=False)}

    def _argmax(
        self,
        head: dict[str, Any],
        x: np.ndarray,
        out: np.ndarray,
        mask: np.ndarray | None,
        batched: bool,
    ) -> np.ndarray:
        """Greedy values of an int action (categorical logits or Q values, masked).

        A bool action's Q values (``head['bool']``) are those of False and True.
        """
        shape, n = tuple(head["shape"]), head["num_values"]
        values = out.reshape(-1, *shape, n)
        if "value_weight" in head:  # dueling: V + A - mean(A)
            value = x @ self.w[head["value_weight"]] + self.w[head["value_bias"]]
            values = value.reshape(-1, *shape, 1) + values - values.mean(-1, keepdims=True)
        if mask is not None:
            mask = mask if batched else mask[None]
            values = np.where(mask.reshape(values.shape), values, -np.inf)
        greedy = values.argmax(-1)
        return greedy.astype(bool) if head.get("bool") else greedy
