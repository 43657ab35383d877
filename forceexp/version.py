"""The package version: one leaf module, kept equal to ``pyproject.toml``'s static version."""

from __future__ import annotations

__version__ = "0.1.0"
