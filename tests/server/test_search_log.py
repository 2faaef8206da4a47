"""The search log is written off the request path, in batches, and loses nothing it was given."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from server.db.models import Search
from tests.factories import make_table
from tests.server.conftest import register


def _rows(client: Any) -> int:
    with client.app.state.amoeba.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(Search)))


def test_searches_are_logged_in_batches_after_the_response(full_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    c = full_client
    state = c.app.state.amoeba
    state.search_log.stop()  # the flusher thread would race the counts below
    token = register(c)
    assert c.post("/v1/devices/dev1/profiles", json=make_table(), headers={"Authorization": f"Bearer {token}"}).status_code == 201
    q = {"device": "dev1", "engine": "torch", "workload": "b1-p16-g8", "budget": {"latency_ms": 2.5}}
    while c.post("/v1/search", json=q).status_code == 503:
        assert state.worker.drain() > 0
    state.search_log.flush()
    before = _rows(c)
    ids = {c.post("/v1/search", json=q).json()["search_id"] for _ in range(20)}
    assert len(ids) == 20 and _rows(c) == before  # answered, not yet written
    assert state.search_log.pending() == 20
    # a failing write keeps the rows for the next flush
    real = state.db.session

    def broken() -> Any:
        raise RuntimeError("database down")

    monkeypatch.setattr(state.db, "session", broken)
    with pytest.raises(RuntimeError):
        state.search_log.flush()
    monkeypatch.setattr(state.db, "session", real)
    assert state.search_log.pending() == 20 and state.search_log.flush() == 20
    with state.db.session() as s:
        uids = set(s.scalars(select(Search.uid).where(Search.uid.in_(ids))))
        assert uids == ids and all(r.answer["best"]["shape"] for r in s.scalars(select(Search).where(Search.uid.in_(ids))))
