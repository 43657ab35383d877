"""The NumPy policy export: an agent's acting networks as JSON architecture + ``.npz`` weights.

``forceexp/export/numpy_policy.py`` (which imports only NumPy) runs what this writes. Only
networks it can run are exported: auto MLPs (``network='auto'`` or a dict of ``type='auto'``)
over flat float or bool states with tanh, relu, elu or silu activations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from forceexp.core.distributions import BernoulliHead, BetaHead, CategoricalHead, GaussianHead
from forceexp.core.networks.auto import AutoNetwork
from forceexp.export.policy import DeterministicPolicy, refuse

FORMAT = "numpy_policy"
#: what ``numpy_policy.py`` calls the activations it implements
ACTIVATIONS = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.ELU: "elu", nn.SiLU: "silu"}


class _Arrays:
    """Collects named float32 arrays for the ``.npz``."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, name: str, value: Any) -> str:
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        self.arrays[name] = np.ascontiguousarray(array, dtype=np.float32)
        return name

    def linear(self, prefix: str, layer: nn.Linear) -> dict[str, str]:
        """Weight stored transposed ``(in, out)`` and bias, by key."""
        return {
            "weight": self.add(f"{prefix}.weight", layer.weight.t()),
            "bias": self.add(f"{prefix}.bias", layer.bias),
        }


def _mlp(agent: Any, network: nn.Module, arrays: _Arrays) -> list[dict[str, str]]:
    """The dense layers of an auto MLP, or a ``ConfigError`` naming what is not supported."""
    if type(network) is not AutoNetwork:
        reason = f"its network is {type(network).__name__}; only the auto MLP exports to NumPy"
        raise refuse(agent, FORMAT, reason + " (use format='onnx' or 'torchscript')")
    if len(network.encoders):
        reason = "its auto network encodes int, image or sequence states"
        raise refuse(agent, FORMAT, reason + " (use format='onnx' or 'torchscript')")
    modules = list(network.mlp)
    layers = []
    for i in range(0, len(modules), 2):
        activation = ACTIVATIONS.get(type(modules[i + 1]))
        if activation is None:
            name = type(modules[i + 1]).__name__
            supported = ", ".join(sorted(ACTIVATIONS.values()))
            raise refuse(agent, FORMAT, f"activation {name} (NumPy export supports {supported})")
        layers.append({**arrays.linear(f"layer{i // 2}", modules[i]), "activation": activation})
    return layers


def _ppo_head(name: str, head: nn.Module, arrays: _Arrays) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "shape": list(head.shape)}
    out.update(arrays.linear(f"head.{name}", head.linear))
    if isinstance(head, CategoricalHead):
        return {**out, "kind": "argmax", "num_values": head.num_values}
    if isinstance(head, BernoulliHead):
        return {**out, "kind": "bernoulli"}
    out["low"] = arrays.add(f"head.{name}.low", head.low)
    out["high"] = arrays.add(f"head.{name}.high", head.high)
    if isinstance(head, BetaHead):
        return {**out, "kind": "beta"}
    assert isinstance(head, GaussianHead)
    return {**out, "kind": "gaussian", "bounding": head.bounding}


def _normalizers(policy: DeterministicPolicy, arrays: _Arrays) -> dict[str, Any]:
    if policy.kind != "ppo":
        return {}
    out = {}
    for name, normalizer in policy.body.normalizers.items():
        out[name] = {
            "mean": arrays.add(f"normalize.{name}.mean", normalizer.mean),
            "var": arrays.add(f"normalize.{name}.var", normalizer.var),
            "epsilon": normalizer.epsilon,
            "clip": normalizer.clip,
        }
    return out


def _heads(agent: Any, policy: DeterministicPolicy, arrays: _Arrays) -> list[dict[str, Any]]:
    body = policy.body
    if policy.kind == "ppo":
        if any(not isinstance(head.linear, nn.Linear) for head in body.heads.values()):
            reason = "a categorical head uses the network output as logits (skip_linear)"
            raise refuse(agent, FORMAT, reason + " (use format='onnx' or 'torchscript')")
        return [_ppo_head(name, head, arrays) for name, head in body.heads.items()]
    if policy.kind == "q":
        heads = []
        for name, head in body.heads.items():
            shape = body.shapes[name]
            entry = {"name": name, "kind": "argmax", "shape": list(shape[:-1])}
            entry.update(num_values=shape[-1], **arrays.linear(f"head.{name}", head))
            if policy.action_specs[name].type == "bool":  # Q values of False and True
                entry["bool"] = True
            if body.dueling:
                value = arrays.linear(f"value.{name}", body.values[name])
                entry.update(value_weight=value["weight"], value_bias=value["bias"])
            heads.append(entry)
        return heads
    output = body.mean if hasattr(body, "mean") else body.output
    return [
        {
            "kind": "tanh_scaled",
            "names": policy.action_names,
            "shapes": [list(s) for s in policy.shapes],
            "sizes": policy.sizes,
            "low": arrays.add("scale.low", policy.low),
            "high": arrays.add("scale.high", policy.high),
            **arrays.linear("head.actions", output),
        }
    ]


def architecture(agent: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON-ready architecture and the weights of ``agent``'s deterministic policy.

    Raises:
        ConfigError: The agent or its network cannot be run by ``numpy_policy.py``.
    """
    policy = DeterministicPolicy(agent, FORMAT)
    for name, spec in agent.state_specs.items:
        if spec.type == "int":
            raise refuse(agent, FORMAT, f"state {name!r} is an int state (needs an embedding)")
    arrays = _Arrays()
    network = policy.body.network
    spec = {
        "format": "forceexp.numpy_policy",
        "version": 1,
        "agent": agent.name,
        "states": [
            {"name": name, "input": key, "shape": list(s.shape), "type": s.type}
            for (name, s), key in zip(agent.state_specs.items, policy.input_names, strict=True)
        ],
        "masks": dict(zip(policy.mask_names, policy.mask_actions, strict=True)),
        "outputs": dict(zip(policy.action_names, policy.output_names, strict=True)),
        "normalize": _normalizers(policy, arrays),
        "layers": _mlp(agent, network, arrays),
        "heads": _heads(agent, policy, arrays),
    }
    return spec, arrays.arrays
