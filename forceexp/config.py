"""The single place that turns config (names, files, dicts, Hydra nodes) into objects."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from torch import nn

from forceexp.core.networks import NETWORKS, AutoNetwork, LayeredNetwork
from forceexp.errors import ConfigError, message
from forceexp.registry import is_spec_file, load_spec_file, resolve
from forceexp.specs import Specs

log = logging.getLogger(__name__)

ALLOWED_TARGET_PREFIXES = ("forceexp.", "torch.", "gymnasium.")


def build(node: Any, **runtime: Any) -> Any:
    """Instantiate a Hydra ``_target_`` node (containers converted to plain Python objects).

    Only targets under ``forceexp.``, ``torch.`` or ``gymnasium.`` are allowed, so a config can
    never import arbitrary code; ``runtime`` kwargs complete ``_partial_`` nodes.
    """
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf

    if node is None:
        return None
    container = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    _check_targets(container, "cfg")
    return instantiate(container, _convert_="all", **runtime)


def build_network(
    spec: Any,
    states: Specs,
    path: str = "network",
    feed_forward: bool = False,
    shared: dict[str, nn.Module] | None = None,
) -> nn.Module:
    """Build a network for ``states``.

    Args:
        spec: ``'auto'`` (or None), a registry key, a list of layers, a list of layer lists, a
            ``.yaml``/``.json`` file holding a dict with ``type``, a dict with ``type`` (or a
            Hydra ``_target_``), an ``nn.Module`` class or a function taking ``states=`` (or an
            import path ``'package.module.name'`` naming one), or a module.
        states: The agent's state specs.
        path: Config path used in error messages.
        feed_forward: Refuse layers that keep internals between steps (recurrent, deltafier,
            sequence): for networks whose internals no agent carries (the critics of dpg,
            td3 and sac, which read states and actions); they would run from zeros at every
            step.
        shared: Named layers of another network of the agent (``network.named``) that this
            layered network may ``reuse``: the layers are shared, not copied.

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
        network = LayeredNetwork(states, list(spec), path, shared)
    elif isinstance(spec, dict) and "_target_" in spec:
        network = build({**spec, "_partial_": True})(states=states)
    else:
        target, kwargs = resolve(spec, NETWORKS, path)
        if not callable(target):
            raise ConfigError(f"{path}: {spec!r} is not a network spec")
        if target in (LayeredNetwork, AutoNetwork):
            _check_arguments(target, kwargs, path)
            kwargs.setdefault("path", path)
        if target is LayeredNetwork:
            kwargs.setdefault("shared", shared)
        network = target(states=states, **kwargs)
    _check_network(network, path, feed_forward)
    if hasattr(network, "summary"):
        log.info("%s: %s\n%s", path, type(network).__name__, network.summary())
    return network


def _check_arguments(target: type[nn.Module], kwargs: dict[str, Any], path: str) -> None:
    """Raise for a key ``target`` (one of our network classes) does not take, naming it."""
    valid = [p for p in inspect.signature(target).parameters if p not in ("states", "path")]
    for key in kwargs:
        if key not in valid:
            raise ConfigError(
                f"{path}.{key}: unknown argument of {target.__name__}; valid: {', '.join(valid)}"
            )


def _check_network(network: nn.Module, path: str, feed_forward: bool) -> None:
    """Raise unless ``network`` has an int ``output_size`` (and no internals if feed-forward)."""
    internals = getattr(network, "internal_shapes", None)
    if feed_forward and internals:
        raise ConfigError(
            f"{next(iter(internals))}: this layer keeps internals between steps, which this "
            "network cannot carry (critics of dpg, td3 and sac read states and actions; their "
            "actor network may be recurrent); use a feed-forward network here"
        )
    if not isinstance(getattr(network, "output_size", None), int):
        raise ConfigError(f"{path}: {type(network).__name__} has no int attribute output_size")


def _check_targets(node: Any, path: str) -> None:
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and not str(target).startswith(ALLOWED_TARGET_PREFIXES):
            raise ConfigError(
                message(f"{path}._target_", target, f"a target under {ALLOWED_TARGET_PREFIXES}")
            )
        for key, value in node.items():
            _check_targets(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_targets(value, f"{path}[{i}]")
