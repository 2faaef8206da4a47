"""SQL-backed accuracy cache implementing ``core.search.accuracy.AccuracyCache`` (table ``accuracy_cache``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.search.accuracy import AccuracyKey, AccuracyRecord
from server.db.models import AccuracyEntry
from server.db.session import Database


def _where(key: AccuracyKey):  # type: ignore[no-untyped-def]
    return (
        AccuracyEntry.checkpoint_sha256 == key.checkpoint_sha256,
        AccuracyEntry.shape_key == key.shape,
        AccuracyEntry.metric == key.metric,
        AccuracyEntry.data_sha256 == key.data_sha256,
    )


class SqlAccuracyCache:
    """Each ``get``/``put`` is its own short transaction, so the cache is safe to share with worker threads."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: AccuracyKey) -> AccuracyRecord | None:
        with self.db.sessions() as s:
            e = s.scalar(select(AccuracyEntry).where(*_where(key)))
            return None if e is None else AccuracyRecord(e.value, float(e.extra["raw"]), str(e.extra["raw_name"]), e.extra.get("detail") or {})

    def put(self, key: AccuracyKey, record: AccuracyRecord) -> None:
        extra = {"raw": record.raw, "raw_name": record.raw_name, "detail": dict(record.detail)}
        for _ in range(2):  # a concurrent insert of the same key: retry as an update
            try:
                with self.db.session() as s:
                    e = s.scalar(select(AccuracyEntry).where(*_where(key)))
                    if e is None:
                        s.add(AccuracyEntry(checkpoint_sha256=key.checkpoint_sha256, shape_key=key.shape, metric=key.metric,
                                            data_sha256=key.data_sha256, value=record.accuracy, extra=extra))
                    else:
                        e.value, e.extra = record.accuracy, extra
                return
            except IntegrityError:
                continue

    def get_many(self, keys: list[AccuracyKey]) -> dict[AccuracyKey, AccuracyRecord]:
        """The cached records among ``keys`` in one SELECT per (checkpoint, metric, data) group (usually one)."""
        out: dict[AccuracyKey, AccuracyRecord] = {}
        groups: dict[tuple[str, str, str], dict[str, AccuracyKey]] = {}
        for k in keys:
            groups.setdefault((k.checkpoint_sha256, k.metric, k.data_sha256), {})[k.shape] = k
        with self.db.sessions() as s:
            for (ckpt, metric, data), by_shape in groups.items():
                q = select(AccuracyEntry.shape_key, AccuracyEntry.value, AccuracyEntry.extra).where(
                    AccuracyEntry.checkpoint_sha256 == ckpt, AccuracyEntry.metric == metric, AccuracyEntry.data_sha256 == data)
                for shape, value, extra in s.execute(q).tuples():
                    if shape in by_shape:
                        out[by_shape[shape]] = AccuracyRecord(value, float(extra["raw"]), str(extra["raw_name"]), extra.get("detail") or {})
        return out

    def values(self, checkpoint_sha256: str, metric: str, data_sha256: str) -> dict[str, float]:
        """Every cached accuracy of one checkpoint/metric/data by shape key (for dashboards)."""
        with self.db.sessions() as s:
            q = select(AccuracyEntry.shape_key, AccuracyEntry.value).where(
                AccuracyEntry.checkpoint_sha256 == checkpoint_sha256, AccuracyEntry.metric == metric, AccuracyEntry.data_sha256 == data_sha256
            )
            return {k: v for k, v in s.execute(q).tuples()}
