"""Keep ``torch.optim`` from importing ``torch._dynamo`` (~1 s) until something compiles.

``torch.optim.Optimizer.add_param_group`` (and ``zero_grad``, ``state_dict``,
``load_state_dict``) are wrapped in ``torch._disable_dynamo``, which imports ``torch._dynamo`` on
its first call to build the "do not trace this" wrapper. Nothing can be traced before
``torch._dynamo`` is imported (``torch.compile`` imports it), so until then the wrapped function
can be called directly; once it is imported, the real wrapper is built and cached, exactly as
torch does. The first ``torch.optim.Adam(...)`` then costs microseconds instead of ~1 s of
start-up (measured by ``benchmarks/startup.py``).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import torch

METHODS = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
CACHE = "__dynamo_disable"  # the attribute torch._compile._disable_dynamo caches its wrapper in


def _deferred(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` itself while ``torch._dynamo`` is not imported; torch's disable wrapper after."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        dynamo = sys.modules.get("torch._dynamo")
        if dynamo is None:  # nothing can be compiling yet
            return fn(*args, **kwargs)
        disabled = dynamo.disable(fn, True, wrapping=False)
        setattr(fn, CACHE, disabled)  # from now on torch calls its own wrapper
        return disabled(*args, **kwargs)

    return call


def defer_dynamo_import() -> None:
    """Seed the optimizer methods' disable-wrapper cache with ``_deferred`` (idempotent).

    Does nothing when ``torch._dynamo`` is already imported or when torch's internals differ
    from the shape this relies on (then torch behaves as shipped).
    """
    if "torch._dynamo" in sys.modules:
        return
    for name in METHODS:
        fn = getattr(getattr(torch.optim.Optimizer, name), "__wrapped__", None)
        if fn is not None and getattr(fn, CACHE, None) is None:
            setattr(fn, CACHE, _deferred(fn))
