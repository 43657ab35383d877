"""Name-to-class tables (one per family) and the one-level resolution of a spec against one.

Below every layer that builds objects (core, agents, environments, config), so each of them
resolves a Tensorforce-style spec the same way.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from forceexp.errors import ConfigError, message, unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """A flat mapping from short names (``'ppo'``, ``'dense'``) to classes or factories.

    Errors for unknown names list the valid keys, so docs and messages never drift.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator registering an object under one or more names (first is canonical)."""

        def decorate(obj: T) -> T:
            for name in names:
                if name in self._entries:
                    raise ConfigError(f"{self.kind} {name!r} is registered twice")
                self._entries[name] = obj
            return obj

        return decorate

    def get(self, name: str, path: str | None = None) -> T:
        """Return the entry for ``name``; raise ``ConfigError`` naming the valid keys if unknown."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise unknown_name(path or self.kind, name, self._entries, self.kind) from None

    def keys(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


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


def import_object(target: str, path: str) -> Any:
    """Import ``package.module.name`` (a user class or function named in a spec).

    Raises:
        ConfigError: The module or the name in it cannot be imported.
    """
    module_name, _, attr = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(
            message(path, target, "an importable 'package.module.name'", f"import failed: {exc}")
        ) from exc


def resolve(spec: Any, registry: Registry, path: str) -> tuple[Any, dict[str, Any]]:
    """Resolve a Tensorforce-style spec one level deep into ``(class_or_object, kwargs)``.

    A string is a registry key, a ``.json``/``.yaml`` path, or (with a dot and not a key) an
    import path ``package.module.name``; a dict pops ``type`` (any of those, a class or a
    function); a class, function or instance passes through. No recursion, no import-by-guess.
    """
    if is_spec_file(spec):
        spec = load_spec_file(spec)
    if isinstance(spec, str):
        return _lookup(spec, registry, path), {}
    if isinstance(spec, dict):
        kwargs = dict(spec)
        kind = kwargs.pop("type", None)
        if kind is None:
            raise ConfigError(message(path, spec, "a dict with a 'type' key"))
        target = _lookup(kind, registry, f"{path}.type") if isinstance(kind, str) else kind
        return target, kwargs
    return spec, {}


def _lookup(name: str, registry: Registry, path: str) -> Any:
    """A registry key's entry, or the object an import path (``a.b.c``) names."""
    if "." in name and name not in registry:
        return import_object(name, path)
    return registry.get(name, path)
