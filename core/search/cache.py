"""Accuracy cache backends: an in-memory dict and a JSON file (atomic, safe for concurrent readers).

Backends are plugins behind ``core.search.accuracy.AccuracyCache``; ``open_cache(name, **kw)`` loads one
lazily by name. The service registers its SQL-backed cache through the same interface.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.atomic import atomic_write_text
from core.errors import ConfigError
from core.registry import Registry
from core.search.accuracy import AccuracyCache, AccuracyKey, AccuracyRecord

CACHE_SCHEMA_VERSION = 1
CACHES: Registry[Any] = Registry("accuracy cache", {
    "memory": "core.search.cache:MemoryAccuracyCache",
    "json": "core.search.cache:JsonAccuracyCache",
})


def open_cache(name: str, **kwargs: Any) -> AccuracyCache:
    """Instantiate the cache backend registered as ``name`` (e.g. ``open_cache("json", path=...)``)."""
    cache: AccuracyCache = CACHES.load(name)(**kwargs)
    return cache


class MemoryAccuracyCache:
    """A process-local cache (tests, one-off queries)."""

    def __init__(self) -> None:
        self._d: dict[str, AccuracyRecord] = {}

    def get(self, key: AccuracyKey) -> AccuracyRecord | None:
        return self._d.get(key.text)

    def put(self, key: AccuracyKey, record: AccuracyRecord) -> None:
        self._d[key.text] = record

    def get_many(self, keys: list[AccuracyKey]) -> dict[AccuracyKey, AccuracyRecord]:
        return {k: r for k in keys if (r := self._d.get(k.text)) is not None}

    def __len__(self) -> int:
        return len(self._d)


class JsonAccuracyCache:
    """A JSON file ``{"schema_version": 1, "entries": {"<ckpt>|<metric>|<data>|<shape>": record}}``.

    Writes lock a sidecar ``<file>.lock`` (``flock``), re-read the file, merge and replace it atomically
    (temp file + ``os.replace``), so concurrent writers never lose each other's entries and readers never
    see a half-written file. Reads reload the file when it changed on disk.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise ConfigError(f"accuracy cache {self.path} exists and is not a file")
        self._entries: dict[str, AccuracyRecord] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._refresh()

    # ---- reading -----------------------------------------------------------------------------------
    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _read(self) -> dict[str, AccuracyRecord]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"accuracy cache {self.path} is corrupt: {e}") from None
        if not isinstance(data, dict) or data.get("schema_version") != CACHE_SCHEMA_VERSION or not isinstance(data.get("entries"), dict):
            raise ConfigError(f"accuracy cache {self.path}: expected schema_version {CACHE_SCHEMA_VERSION} with an 'entries' object")
        out = {}
        for k, v in data["entries"].items():
            AccuracyKey.parse(k)
            out[k] = AccuracyRecord.from_dict(v)
        return out

    def _refresh(self) -> None:
        stamp = self._file_stamp()
        if stamp != self._stamp:
            self._entries = self._read()
            self._stamp = stamp

    def get(self, key: AccuracyKey) -> AccuracyRecord | None:
        hit = self._entries.get(key.text)
        if hit is None:
            self._refresh()
            hit = self._entries.get(key.text)
        return hit

    def get_many(self, keys: list[AccuracyKey]) -> dict[AccuracyKey, AccuracyRecord]:
        """The cached records among ``keys`` (the file is re-read at most once)."""
        self._refresh()
        return {k: r for k in keys if (r := self._entries.get(k.text)) is not None}

    def entries(self) -> dict[AccuracyKey, AccuracyRecord]:
        """Every entry in the file (fresh read)."""
        self._refresh()
        return {AccuracyKey.parse(k): v for k, v in self._entries.items()}

    def __len__(self) -> int:
        self._refresh()
        return len(self._entries)

    # ---- writing -----------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def put(self, key: AccuracyKey, record: AccuracyRecord) -> None:
        self.put_many({key: record})

    def put_many(self, items: dict[AccuracyKey, AccuracyRecord]) -> None:
        """Store several records in one locked read-merge-replace."""
        with self._locked():
            entries = self._read()
            entries.update({k.text: v for k, v in items.items()})
            payload = {"schema_version": CACHE_SCHEMA_VERSION, "entries": {k: entries[k].to_dict() for k in sorted(entries)}}
            atomic_write_text(self.path, json.dumps(payload, indent=1, allow_nan=False))
            self._entries = entries
            self._stamp = self._file_stamp()
