"""``Registry[T]``: one lazy plugin registry for every plugin family (engines, baselines, metrics, caches, searchers).

A registry maps names to ``"module:attr"`` strings; nothing is imported until ``load(name)``. An unknown name is a
``ConfigError`` that lists the known ones; a target of the wrong kind (``check``) is one too. Entries are data,
so help texts and benchmark method lists read ``names()`` without importing any plugin.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from core.errors import ConfigError

T = TypeVar("T")


def subclass_of(base: type | str) -> Callable[[Any], bool]:
    """A ``check`` for ``Registry``: the member is a subclass of ``base`` (a class, or a ``"module:attr"`` imported
    on the first check, so that the table can live in a light module while the base class needs heavy imports)."""

    def check(obj: Any) -> bool:
        cls = base if isinstance(base, type) else getattr(importlib.import_module(base.partition(":")[0]), base.partition(":")[2])
        return isinstance(obj, type) and issubclass(obj, cls)

    return check


class Registry(Generic[T]):
    """Name → ``"module:attr"``, imported on first use and checked by ``check`` (e.g. a subclass test)."""

    def __init__(self, kind: str, entries: Mapping[str, str], check: Callable[[Any], bool] | None = None) -> None:
        for name, target in entries.items():
            module, sep, attr = target.partition(":")
            if not (name and module and sep and attr):
                raise ConfigError(f"{kind} registry entry {name!r}: target {target!r} is not 'module:attr'")
        self.kind = kind
        self._entries = dict(entries)
        self._check = check
        self._loaded: dict[str, T] = {}

    def names(self) -> list[str]:
        """Registered names, in registration order (nothing is imported)."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def target(self, name: str) -> str:
        """The ``"module:attr"`` of ``name``; ``ConfigError`` listing the known names when it is not registered."""
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}") from None

    def load(self, name: str) -> T:
        """Import and return the object registered as ``name`` (cached)."""
        if name in self._loaded:
            return self._loaded[name]
        target = self.target(name)
        module, _, attr = target.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"{self.kind} {name!r} ({target}) cannot be loaded: {e}") from None
        if self._check is not None and not self._check(obj):
            raise ConfigError(f"{self.kind} {name!r} ({target}) is not a valid {self.kind}")
        self._loaded[name] = obj
        return obj  # type: ignore[no-any-return]

    def register(self, name: str, target: str) -> None:
        """Add an entry (e.g. a third-party plugin); ``ConfigError`` if the name is taken."""
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is already registered ({self._entries[name]})")
        module, sep, attr = target.partition(":")
        if not (module and sep and attr):
            raise ConfigError(f"{self.kind} {name!r}: target {target!r} is not 'module:attr'")
        self._entries[name] = target
