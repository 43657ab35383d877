"""Network registry and ``build_network``: every way to name a network ends here.

A network is an ``nn.Module`` with an ``output_size`` attribute whose ``forward`` takes a dict of
state tensors ``{name: (B, *shape)}`` and returns features ``(B, output_size)``.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from forceexp.config import build, is_spec_file, load_spec_file, resolve
from forceexp.core.networks.auto import AutoNetwork
from forceexp.core.networks.layered import LayeredNetwork
from forceexp.errors import ConfigError
from forceexp.registry import Registry
from forceexp.specs import Specs

log = logging.getLogger(__name__)

NETWORKS: Registry[type[nn.Module]] = Registry("network")
NETWORKS.register("auto")(AutoNetwork)
NETWORKS.register("layered")(LayeredNetwork)

__all__ = ["NETWORKS", "AutoNetwork", "LayeredNetwork", "build_network"]


def build_network(spec: Any, states: Specs, path: str = "network") -> nn.Module:
    """Build a network for ``states``.

    Args:
        spec: ``'auto'`` (or None), a registry key, a list of layers, a list of layer lists, a
            ``.yaml``/``.json`` file holding a dict with ``type``, a dict with ``type`` (or a
            Hydra ``_target_``), an ``nn.Module`` class taking ``states=``, or a module.
        states: The agent's state specs.
        path: Config path used in error messages.

    Raises:
        ConfigError: For an unknown network or layer, a bad layer argument or a shape mismatch.
    """
    if spec is None:
        spec = "auto"
    if is_spec_file(spec):
        spec = load_spec_file(spec)
    if isinstance(spec, nn.Module):
        network = spec
    elif isinstance(spec, list | tuple):
        network = LayeredNetwork(states, list(spec), path)
    elif isinstance(spec, dict) and "_target_" in spec:
        network = build({**spec, "_partial_": True})(states=states)
    else:
        target, kwargs = resolve(spec, NETWORKS, path)
        if not callable(target):
            raise ConfigError(f"{path}: {spec!r} is not a network spec")
        if target is LayeredNetwork:
            kwargs.setdefault("path", path)
        network = target(states=states, **kwargs)
    if not isinstance(getattr(network, "output_size", None), int):
        raise ConfigError(f"{path}: {type(network).__name__} has no int attribute output_size")
    if hasattr(network, "summary"):
        log.info("%s: %s\n%s", path, type(network).__name__, network.summary())
    return network
