"""One contract for every accuracy cache: the registered ones (``core.search.cache.CACHES``) and the service's SQL
cache (``server.services.accuracy_cache.SqlAccuracyCache``, which core cannot name)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.search.accuracy import AccuracyKey, AccuracyRecord
from core.search.cache import CACHES, open_cache


def _sql(tmp: Path) -> Any:
    from server.db.migrate import upgrade
    from server.db.session import Database
    from server.services.accuracy_cache import SqlAccuracyCache

    url = f"sqlite:///{tmp / 'acc.db'}"
    upgrade(url)
    return SqlAccuracyCache(Database(url))


#: name → (open a cache on the store in ``tmp``, whether a second instance on that store sees the first one's entries)
BACKENDS: dict[str, tuple[Callable[[Path], Any], bool]] = {
    "memory": (lambda tmp: open_cache("memory"), False),
    "json": (lambda tmp: open_cache("json", path=tmp / "acc.json"), True),
    "sql": (_sql, True),
}


def key(shape: str = "L4-a1-f1", ckpt: str = "c" * 64, metric: str = "ppl", data: str = "d" * 64) -> AccuracyKey:
    return AccuracyKey(ckpt, shape, metric, data)


REC = AccuracyRecord(accuracy=-2.5, raw=12.18, raw_name="ppl", detail={"tokens_scored": 255, "windows": [1, 2]})


def test_every_registered_cache_is_under_contract() -> None:
    assert set(CACHES.names()) | {"sql"} == set(BACKENDS)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Callable[[], Any], bool]]:
    make, persistent = BACKENDS[request.param]
    opened: list[Any] = []

    def open_one() -> Any:
        opened.append(make(tmp_path) if not opened or persistent else opened[0])
        return opened[-1]

    yield open_one, persistent
    for c in opened:
        db = getattr(c, "db", None)
        if db is not None:
            db.dispose()


def test_miss_put_get_and_overwrite(backend: tuple[Callable[[], Any], bool]) -> None:
    c = backend[0]()
    assert c.get(key()) is None
    c.put(key(), REC)
    assert c.get(key()) == REC
    newer = AccuracyRecord(-2.0, 7.4, "ppl")
    c.put(key(), newer)
    assert c.get(key()) == newer


def test_every_key_field_separates_entries(backend: tuple[Callable[[], Any], bool]) -> None:
    c = backend[0]()
    c.put(key(), REC)
    for other in (key(shape="L3-a1-f1"), key(ckpt="e" * 64), key(metric="mc:piqa:acc"), key(data="f" * 64)):
        assert c.get(other) is None


def test_get_many_returns_exactly_the_cached_ones(backend: tuple[Callable[[], Any], bool]) -> None:
    c = backend[0]()
    present = {key(f"L{n}-a1-f1"): AccuracyRecord(-float(n), float(n), "ppl") for n in (2, 4)}
    for k, r in present.items():
        c.put(k, r)
    asked = [key(f"L{n}-a1-f1") for n in (1, 2, 3, 4)] + [key("L2-a1-f1", metric="other")]
    assert c.get_many(asked) == present


def test_a_second_instance_on_the_same_store_sees_the_entries(backend: tuple[Callable[[], Any], bool]) -> None:
    open_one, persistent = backend
    if not persistent:
        pytest.skip("process-local cache")
    open_one().put(key(), REC)
    assert open_one().get(key()) == REC
