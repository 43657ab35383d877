"""The single place that turns config (names, files, dicts, Hydra nodes) into objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forceexp.errors import ConfigError, message
from forceexp.registry import Registry

ALLOWED_TARGET_PREFIXES = ("forceexp.", "torch.", "gymnasium.")


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """Read a ``.json`` or ``.yaml`` spec file into a plain dict."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read spec file ({exc})") from exc
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()} ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(message(str(path), type(data).__name__, "a mapping at top level"))
    return data


def is_spec_file(value: Any) -> bool:
    """Whether ``value`` is a string naming a JSON/YAML file."""
    return isinstance(value, str | Path) and str(value).endswith((".json", ".yaml", ".yml"))


def resolve(spec: Any, registry: Registry, path: str) -> tuple[Any, dict[str, Any]]:
    """Resolve a Tensorforce-style spec one level deep into ``(class_or_object, kwargs)``.

    A string is a registry key or a ``.json``/``.yaml`` path; a dict pops ``type`` (a key or a
    class); a class or instance passes through. No recursion and no import-by-guess.
    """
    if is_spec_file(spec):
        spec = load_spec_file(spec)
    if isinstance(spec, str):
        return registry.get(spec, path), {}
    if isinstance(spec, dict):
        kwargs = dict(spec)
        kind = kwargs.pop("type", None)
        if kind is None:
            raise ConfigError(message(path, spec, "a dict with a 'type' key"))
        target = registry.get(kind, f"{path}.type") if isinstance(kind, str) else kind
        return target, kwargs
    return spec, {}


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
