"""LAYERS registry of shape-checked layers; importing this package registers every layer."""

from __future__ import annotations

from forceexp.core.layers import (
    attention,
    block,
    conv,
    dense,
    misc,
    normalization,
    preprocessing,
    recurrent,
    routing,
)
from forceexp.core.layers.base import ACTIVATIONS, LAYERS, Layer
from forceexp.core.layers.build import CustomLayer, Function, build_layer

__all__ = [
    "ACTIVATIONS",
    "LAYERS",
    "CustomLayer",
    "Function",
    "Layer",
    "attention",
    "block",
    "build_layer",
    "conv",
    "dense",
    "misc",
    "normalization",
    "preprocessing",
    "recurrent",
    "routing",
]
