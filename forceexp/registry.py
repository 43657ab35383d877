"""Name-to-class tables (one per family) filled by a decorator next to each class."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from forceexp.errors import ConfigError, unknown_name

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
