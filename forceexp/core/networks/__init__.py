"""Network registry: the classes a network spec may name (built by ``config.build_network``).

A network is an ``nn.Module`` with an ``output_size`` attribute whose ``forward`` takes a dict of
state tensors ``{name: (B, *shape)}`` and returns features ``(B, output_size)``.
"""

from __future__ import annotations

from torch import nn

from forceexp.core.networks.auto import AutoNetwork
from forceexp.core.networks.layered import LayeredNetwork
from forceexp.registry import Registry

NETWORKS: Registry[type[nn.Module]] = Registry("network")
NETWORKS.register("auto")(AutoNetwork)
NETWORKS.register("layered")(LayeredNetwork)

__all__ = ["NETWORKS", "AutoNetwork", "LayeredNetwork"]
