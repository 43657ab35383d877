"""Export an agent's deterministic policy for deployment: ONNX, TorchScript or NumPy only.

``agent.save(directory, format='onnx' | 'torchscript' | 'numpy_policy')`` calls ``export``.
Exported files act like ``agent.act(states, independent=True, deterministic=True)`` from raw
states (normalisation and env-scale mapping included) and are not checkpoints: they are not
listed in ``checkpoint.json`` and ``Agent.load`` does not read them. See ``docs/export.md``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from forceexp.checkpoints import atomic_write
from forceexp.errors import ConfigError, message

#: export format -> suffix of the file ``export`` returns
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "numpy_policy": ".policy.json"}
FORMATS = tuple(SUFFIXES)
COUNTERS = ("timesteps", "episodes", "updates")


def export(
    agent: Any,
    directory: str | Path,
    filename: str | None = None,
    format: str = "onnx",
    append: str | None = None,
) -> str:
    """Write ``agent``'s deterministic policy to ``directory/<filename>[-<counter>]<suffix>``.

    Args:
        agent: A ``ppo``, ``dqn``/``double_dqn``/``dueling_dqn``, ``sac``, ``td3`` or ``dpg``
            agent.
        directory: Target folder (created if missing).
        filename: File name stem (default ``'agent'``).
        format: ``'onnx'`` (``.onnx``), ``'torchscript'`` (``.torchscript.pt``) or
            ``'numpy_policy'`` (``.policy.json`` plus ``.policy.npz``).
        append: ``'timesteps'``, ``'episodes'`` or ``'updates'``: add that counter to the name.

    Returns:
        The path written (for ``numpy_policy``, the JSON file, which names the weights).

    Raises:
        ConfigError: Unknown format, or an agent or network that the format cannot export.
    """
    if format not in SUFFIXES:
        raise ConfigError(message("save.format", format, f"one of {', '.join(FORMATS)}"))
    if append is not None and append not in COUNTERS:
        raise ConfigError(
            message("save.append", append, "None, 'timesteps', 'episodes' or 'updates'")
        )
    if getattr(agent, "preprocessing", None) is not None:
        raise ConfigError(
            f"save.format: {format!r} exports the networks alone, and this agent runs "
            "state_preprocessing before them; save with format='checkpoint' instead"
        )
    name = filename or "agent"
    if append is not None:
        name = f"{name}-{int(getattr(agent, append))}"
    path = Path(directory) / f"{name}{SUFFIXES[format]}"
    if format == "numpy_policy":
        _write_numpy(agent, path)
    else:
        from forceexp.export.torch_formats import WRITERS, traced_policy

        policy = traced_policy(agent, format)
        atomic_write(path, lambda tmp: WRITERS[format](agent, policy, tmp))
    return str(path)


def _write_numpy(agent: Any, path: Path) -> None:
    """The ``.policy.npz`` weights first, then the JSON that names them and their SHA-256."""
    import numpy as np

    from forceexp.export.numpy_export import architecture

    spec, arrays = architecture(agent)
    weights = path.with_name(path.name.removesuffix(".json") + ".npz")

    def write_weights(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez(f, **arrays)

    atomic_write(weights, write_weights)
    spec["weights"] = weights.name
    spec["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    text = json.dumps(spec, indent=1)
    atomic_write(path, lambda tmp: tmp.write_text(text))
