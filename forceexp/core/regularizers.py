"""Tensorforce's per-agent regularizers: variable noise while acting and the L2 weight penalty.

Every agent with a network shares these: ``perturbed`` adds Gaussian noise to the acting
parameters for one act and restores them after it; ``l2_penalty`` is the term
``l2 / 2 * sum(w ** 2)`` over weight matrices that an update adds to its loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from forceexp.errors import ConfigError, message


def check_regularizers(l2_regularization: Any, variable_noise: Any) -> None:
    """Raise ``ConfigError`` unless both are numbers >= 0 (0: off)."""
    given = {"l2_regularization": l2_regularization, "variable_noise": variable_noise}
    for name, value in given.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not 0 <= value < math.inf:
            raise ConfigError(message(f"agent.{name}", value, "a number >= 0 (0: off)"))


@contextmanager
def perturbed(params: list[torch.Tensor], std: float) -> Iterator[None]:
    """Within the block, ``params`` carry ``N(0, std**2)`` noise; restored after it (0: off).

    The noise is added in place, so NumPy views of the parameters (fast acting paths) see it
    too. It is drawn from torch's global generator.
    """
    if not std:
        yield
        return
    with torch.no_grad():
        saved = [p.clone() for p in params]
        for p in params:
            p.add_(torch.randn_like(p), alpha=std)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, original in zip(params, saved, strict=True):
                p.copy_(original)


def weight_matrices(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    """The weight matrices (parameters named ``*weight``, no biases) of ``modules``."""
    return [
        p for module in modules for name, p in module.named_parameters() if name.endswith("weight")
    ]


def l2_penalty(coefficient: float, weights: list[torch.Tensor]) -> torch.Tensor | float:
    """``coefficient / 2 * sum(w ** 2)`` over ``weights`` (0.0 when the coefficient is 0)."""
    if not coefficient:
        return 0.0
    return 0.5 * coefficient * sum(w.pow(2).sum() for w in weights)
