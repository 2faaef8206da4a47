"""A lazy plugin registry: names map to ``"module:attr"`` strings, imported on first use."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from core.errors import ConfigError


def load_plugin(registry: Mapping[str, str], name: str, kind: str) -> Any:
    """Import and return the object registered as ``name``; ``ConfigError`` lists the known names."""
    target = registry.get(name)
    if target is None:
        raise ConfigError(f"unknown {kind} {name!r}; known: {', '.join(sorted(registry))}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
