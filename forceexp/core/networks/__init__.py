"""Network registry and ``build_network``: every way to name a network ends here.

A network is an ``nn.Module`` with an ``output_size`` attribute whose ``forward`` takes a dict of
state tensors ``{name: (B, *shape)}`` and returns features ``(B, output_size)``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from forceexp.config import resolve
from forceexp.core.networks.auto import AutoNetwork
from forceexp.errors import ConfigError
from forceexp.registry import Registry
from forceexp.specs import Specs

NETWORKS: Registry[type[nn.Module]] = Registry("network")
NETWORKS.register("auto")(AutoNetwork)

__all__ = ["NETWORKS", "AutoNetwork", "build_network"]


def build_network(spec: Any, states: Specs, path: str = "network") -> nn.Module:
    """Build a network for ``states`` from ``'auto'``, a registry key or dict, a class, or a module.

    Args:
        spec: The network spec (None means ``'auto'``).
        states: The agent's state specs.
        path: Config path used in error messages.
    """
    if spec is None:
        spec = "auto"
    if isinstance(spec, nn.Module):
        network = spec
    else:
        target, kwargs = resolve(spec, NETWORKS, path)
        if not callable(target):
            raise ConfigError(f"{path}: {spec!r} is not a network spec")
        network = target(states=states, **kwargs)
    if not isinstance(getattr(network, "output_size", None), int):
        raise ConfigError(f"{path}: {type(network).__name__} has no int attribute output_size")
    return network
