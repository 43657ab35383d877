"""ONNX and TorchScript writers of ``DeterministicPolicy`` (the batch axis stays dynamic).

ONNX uses torch's ``torch.export``-based exporter (``dynamo=True``, the default since torch 2.9;
it needs ``onnxscript``, installed by the ``export`` extra); TorchScript uses ``torch.jit.trace``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from forceexp.errors import ConfigError
from forceexp.export.policy import DeterministicPolicy, refuse


def traced_policy(agent: Any, format: str) -> DeterministicPolicy:
    """The agent's ``DeterministicPolicy`` (raises ``ConfigError`` for unsupported agents)."""
    return DeterministicPolicy(agent, format)


def _network_name(agent: Any) -> str:
    body = getattr(agent, "policy", None) or getattr(agent, "q", None) or agent.actor
    return type(getattr(body, "network", body)).__name__


def _untraceable(agent: Any, format: str, exc: Exception) -> ConfigError:
    while exc.__cause__ is not None:  # the root cause reads best (torch wraps it twice)
        exc = exc.__cause__  # type: ignore[assignment]
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = f"its network {_network_name(agent)} does not trace ({type(exc).__name__}: {first})"
    return refuse(agent, format, reason)


def write_onnx(agent: Any, policy: DeterministicPolicy, path: Path) -> None:
    """Export to ONNX (opset of torch's exporter) with a dynamic batch axis."""
    try:
        import onnxscript  # noqa: F401  (torch's exporter imports it; fail with a clear message)
    except ImportError:
        raise ConfigError(
            "save(format='onnx') needs the onnx packages: pip install 'forceexp[export]'"
        ) from None
    batch = torch.export.Dim("batch")
    inputs = policy.example_inputs()
    names = policy.input_names + policy.mask_names
    logger = logging.getLogger("torch.onnx")  # "torchvision is not installed" lines
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the exporter's own deprecation chatter
            torch.onnx.export(
                policy,
                inputs,
                str(path),
                input_names=names,
                output_names=policy.output_names,
                dynamo=True,
                dynamic_shapes=(tuple({0: batch} for _ in inputs),),  # forward(*inputs)
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # torch raises many types for what it cannot export
        raise _untraceable(agent, "onnx", exc) from exc
    finally:
        logger.setLevel(level)


def write_torchscript(agent: Any, policy: DeterministicPolicy, path: Path) -> None:
    """Trace with ``torch.jit.trace`` and save with ``torch.jit.save``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notice
            traced = torch.jit.trace(policy, policy.example_inputs(), check_trace=False)
            traced.save(str(path))
    except Exception as exc:  # torch raises many types for what it cannot trace
        raise _untraceable(agent, "torchscript", exc) from exc


WRITERS: dict[str, Callable[[Any, DeterministicPolicy, Path], None]] = {
    "onnx": write_onnx,
    "torchscript": write_torchscript,
}
