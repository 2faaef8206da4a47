"""CLI and HTTP answer the same query identically (one pipeline), and the service's index is invalidated by a new fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import affine_table, make_table, tiny_checkpoint, write_table
from tests.server.conftest import add_tokenizer, register, settings_for
from tests.server.test_cli_search import _run


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_and_http_answer_identically(tmp_path: Path, db_url: str) -> None:
    from core.checkpoint import open_checkpoint
    from server.app import create_app

    ckpt = tiny_checkpoint(tmp_path)
    calib = add_tokenizer(ckpt)
    opened = open_checkpoint(ckpt)
    table = write_table(tmp_path / "table.json", affine_table(opened.elastic.info, opened.strategy.space))
    settings = settings_for(tmp_path, db_url, checkpoint=ckpt, calib_text=calib, calib_window=16, calib_max_windows=2)
    budgets = [(2.0, "tpot"), (3.0, "tpot"), (14.0, "ttft")]
    with TestClient(create_app(settings)) as c:
        token = register(c)
        assert c.post("/v1/devices/dev1/profiles", json=json.loads(table.read_text()), headers={"Authorization": f"Bearer {token}"}).status_code == 201
        q = {"device": "dev1", "engine": "torch", "workload": "b1-p16-g8"}
        while (r := c.post("/v1/search", json={**q, "budget": {"latency_ms": 3.0}})).status_code == 503:
            assert c.app.state.amoeba.worker.drain() > 0, r.text
        http = [c.post("/v1/search", json={**q, "budget": {"latency_ms": b, "metric": m}}).json() for b, m in budgets]
    def cli_search(budget: float, metric: str, *extra: str) -> dict[str, Any]:
        code, out, _ = _run("search", "--checkpoint", ckpt, "--table", table, "--accuracy-cache", tmp_path / "acc.json", "--calib-text", calib,
                            "--window", "16", "--max-windows", "2", "--budget-ms", str(budget), "--metric", metric, "--json", *extra)
        assert code == 0, out
        return dict(json.loads(out)["answer"])

    # the service fills the whole accuracy table before answering; the CLI fills it with one unbounded query
    assert cli_search(1000.0, "tpot", "--method", "exhaustive")["front_complete"] is True
    for (b, m), h in zip(budgets, http, strict=True):
        cli = cli_search(b, m)
        assert h["method"] == "index" and cli["method"] == "index"
        assert cli["best"]["shape"] == h["shape"]
        assert cli["best"]["accuracy"] == pytest.approx(h["accuracy_score"], abs=1e-9)
        assert cli["best"]["accuracy_raw"] == pytest.approx(h["accuracy_value"], rel=1e-9)
        assert cli["best"]["latency_ms"] == pytest.approx(h["latency_ms"], rel=1e-9)
        assert cli["best"]["e2e_ms"] == pytest.approx(h["predicted"]["e2e_ms"], rel=1e-9)
        assert [n["shape"] for n in cli["neighbours"]] == [n["shape"] for n in h["neighbours"]]


def test_index_is_rebuilt_for_a_new_fit(full_client: Any) -> None:
    c = full_client
    state = c.app.state.amoeba
    token = register(c)
    h = {"Authorization": f"Bearer {token}"}
    q = {"device": "dev1", "engine": "torch", "workload": "b1-p16-g8", "budget": {"latency_ms": 2.5}}
    assert c.post("/v1/devices/dev1/profiles", json=make_table(), headers=h).status_code == 201
    while c.post("/v1/search", json=q).status_code == 503:
        assert state.worker.drain() > 0
    first = c.post("/v1/search", json=q).json()
    assert state.search.indexes.builds == 1 and c.post("/v1/search", json=q).json()["shape"] == first["shape"] and state.search.indexes.builds == 1
    # a slower device table: a new profile → a new fit → a new index, and another answer
    assert c.post("/v1/devices/dev1/profiles", json=make_table(base_ms=1.5, per_layer_ms=0.6), headers=h).status_code == 201
    assert c.post("/v1/search", json=q).status_code == 503  # the new profile is being fitted: never answered from the old fit
    state.worker.drain()
    second = c.post("/v1/search", json=q).json()
    assert state.search.indexes.builds == 2 and second["latency_ms"] <= 2.5
    assert (second["shape"], second["latency_ms"]) != (first["shape"], first["latency_ms"])


def test_resolution_cache_refreshes_once_and_follows_a_new_profile(full_client: Any) -> None:
    """An expired resolution is refreshed by one request while the others keep it; a newer profile without its fit
    (uploaded by another process: no local invalidation) drops it at the next refresh."""
    c = full_client
    state = c.app.state.amoeba
    state.settings = state.search.settings = state.settings.model_copy(update={"resolve_ttl_s": 60.0})
    now = [1000.0]
    state.search.clock = lambda: now[0]  # time is stepped, not slept: a loaded machine cannot expire it early
    token = register(c)
    assert c.post("/v1/devices/dev1/profiles", json=make_table(), headers={"Authorization": f"Bearer {token}"}).status_code == 201
    q = {"device": "dev1", "engine": "torch", "workload": "b1-p16-g8", "budget": {"latency_ms": 2.5}}
    while c.post("/v1/search", json=q).status_code == 503:
        assert state.worker.drain() > 0
    svc = state.search
    assert svc.cached_resolution("dev1", "torch", "b1-p16-g8") is not None
    now[0] += 59.0
    assert svc.cached_resolution("dev1", "torch", "b1-p16-g8") is not None  # still inside the TTL
    now[0] += 2.0
    assert svc.cached_resolution("dev1", "torch", "b1-p16-g8") is None  # this caller refreshes ...
    assert svc.cached_resolution("dev1", "torch", "b1-p16-g8") is not None  # ... the others keep the previous one
    svc.resolve("dev1", "torch", "b1-p16-g8")
    from server.db.models import Device
    from server.services.profiles import ingest_profile

    with state.db.session() as s:  # another process stores a newer table: no invalidation here
        dev = s.query(Device).one()
        ingest_profile(s, dev, make_table(base_ms=3.0), state.runtime.identity())
    now[0] += 61.0
    r = c.post("/v1/search", json=q)
    assert r.status_code == 503 and "fitted" in r.json()["detail"]  # never the old fit once the refresh saw the new profile
    assert c.post("/v1/search", json=q).status_code == 503
