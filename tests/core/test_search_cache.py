"""Accuracy cache backends: keys, JSON round trip, atomic replace, concurrent writers, corrupt files (the contract every
backend keeps: ``test_cache_contract.py``)."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.search.accuracy import AccuracyKey, AccuracyRecord
from core.search.cache import JsonAccuracyCache, MemoryAccuracyCache, open_cache


def key(shape: str = "L4-a1-f1", ckpt: str = "c" * 64, metric: str = "ppl", data: str = "d" * 64) -> AccuracyKey:
    return AccuracyKey(ckpt, shape, metric, data)


REC = AccuracyRecord(accuracy=-2.5, raw=12.18, raw_name="ppl", detail={"tokens_scored": 255})


def test_key_text_round_trip_and_validation() -> None:
    k = key()
    assert AccuracyKey.parse(k.text) == k
    with pytest.raises(ConfigError, match="shape"):
        key(shape="")
    with pytest.raises(ConfigError, match="metric"):
        key(metric="a|b")
    with pytest.raises(ConfigError, match="bad accuracy key"):
        AccuracyKey.parse("a|b")


def test_record_rejects_non_finite_accuracy() -> None:
    with pytest.raises(ConfigError, match="finite"):
        AccuracyRecord(float("nan"), 1.0, "ppl")


def test_json_round_trip_and_no_temp_files(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "acc.json"
    c = JsonAccuracyCache(p)
    c.put_many({key(f"L{n}-a1-f1"): AccuracyRecord(-float(n), float(n), "ppl") for n in range(1, 6)})
    c.put(key("L9-a1-f1"), REC)
    again = JsonAccuracyCache(p)
    assert len(again) == 6
    assert again.get(key("L9-a1-f1")) == REC
    assert json.loads(p.read_text())["schema_version"] == 1
    assert sorted(x.name for x in p.parent.iterdir()) == ["acc.json", "acc.json.lock"]


def test_reader_sees_other_writers(tmp_path: Path) -> None:
    p = tmp_path / "acc.json"
    reader, writer = JsonAccuracyCache(p), JsonAccuracyCache(p)
    assert reader.get(key()) is None
    writer.put(key(), REC)
    assert reader.get(key()) == REC


def _writer(path: str, tag: str, n: int) -> None:
    c = JsonAccuracyCache(path)
    for i in range(n):
        c.put(key(f"L{i + 1}-a1-f1", metric=tag), AccuracyRecord(-float(i), float(i), "ppl"))


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    p = tmp_path / "acc.json"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(p), f"m{j}", 15)) for j in range(3)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join(60)
        assert pr.exitcode == 0
    assert len(JsonAccuracyCache(p)) == 45


def test_corrupt_and_foreign_files_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "acc.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="corrupt"):
        JsonAccuracyCache(p)
    p.write_text(json.dumps({"schema_version": 99, "entries": {}}))
    with pytest.raises(ConfigError, match="schema_version"):
        JsonAccuracyCache(p)
    p.write_text(json.dumps({"schema_version": 1, "entries": {key().text: {"accuracy": "x"}}}))
    with pytest.raises(ConfigError, match="bad accuracy record"):
        JsonAccuracyCache(p)
    with pytest.raises(ConfigError, match="not a file"):
        JsonAccuracyCache(tmp_path)


def test_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    p = tmp_path / "acc.json"
    c = JsonAccuracyCache(p)
    c.put(key(), REC)
    before = p.read_bytes()
    with pytest.raises(TypeError):
        c.put(key("L2-a1-f1"), AccuracyRecord(-1.0, 1.0, "ppl", detail={"bad": object()}))
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["acc.json", "acc.json.lock"]


def test_registry() -> None:
    assert isinstance(open_cache("memory"), MemoryAccuracyCache)
    with pytest.raises(ConfigError, match="unknown accuracy cache 'sql'; known: memory, json"):
        open_cache("sql")
