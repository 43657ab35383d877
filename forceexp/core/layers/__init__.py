"""LAYERS registry of shape-checked layers; importing this package registers every layer."""

from __future__ import annotations

from forceexp.core.layers import block, conv, dense, misc, recurrent, routing
from forceexp.core.layers.base import ACTIVATIONS, LAYERS, Layer
from forceexp.core.layers.build import CustomLayer, build_layer

__all__ = [
    "ACTIVATIONS",
    "LAYERS",
    "CustomLayer",
    "Layer",
    "block",
    "build_layer",
    "conv",
    "dense",
    "misc",
    "recurrent",
    "routing",
]
