"""A checkpoint's shipped accuracy table seeds the SQL cache, so a cold start evaluates nothing."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from core.search.cache import JsonAccuracyCache
from core.search.shapes import UniformSpace
from server.app import create_app
from server.db.models import Job
from server.services.accuracy import ACCURACY, ACCURACY_TABLE_FILE, warm_accuracy
from tests.factories import tiny_checkpoint
from tests.server.conftest import settings_for, tiny_metric_factory


def test_shipped_table_seeds_the_cache_and_nothing_is_queued(tmp_path: Path, db_url: str) -> None:
    ckpt = tiny_checkpoint(tmp_path / "c")
    # a first service computes the table into the SQL cache; we ship it as <checkpoint>/accuracy.json
    first = create_app(settings_for(tmp_path / "one", db_url, checkpoint=ckpt), metric_factory=tiny_metric_factory).state.amoeba
    assert first.accuracy.fill() == len(UniformSpace(first.accuracy.space))
    table = JsonAccuracyCache(ckpt / ACCURACY_TABLE_FILE)
    keys = [first.accuracy.cached().key(shape) for shape in UniformSpace(first.accuracy.space)]
    records = first.accuracy.cache.get_many(keys)
    assert len(records) == len(keys)
    for key, record in records.items():
        table.put(key, record)
    k0 = keys[0]
    table.put(type(k0)("f" * 64, k0.shape, k0.metric, k0.data_sha256), records[k0])  # another checkpoint's entry

    other_db = f"sqlite:///{tmp_path / 'cold.db'}"
    from server.db.migrate import upgrade

    upgrade(other_db)
    app = create_app(settings_for(tmp_path / "two", other_db, checkpoint=ckpt), metric_factory=tiny_metric_factory)
    state = app.state.amoeba
    assert state.accuracy.missing() == len(UniformSpace(state.accuracy.space))
    warm_accuracy(app)
    assert state.accuracy.complete() and state.accuracy.missing() == 0
    with state.db.session() as s:  # nothing to compute, nothing queued
        assert s.execute(select(Job).where(Job.kind == ACCURACY, Job.key == state.accuracy.job_key())).first() is None
    assert state.accuracy.seed(ckpt / ACCURACY_TABLE_FILE) == 0  # idempotent; the foreign checkpoint's entry is ignored
    assert state.accuracy.seed(tmp_path / "absent.json") == 0
