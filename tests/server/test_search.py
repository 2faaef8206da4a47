"""Search, Pareto and artifact routes end to end in-process (refit, accuracy and export jobs drained explicitly)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.spec import SubnetSpec
from server.db.models import Artifact, Job, Search
from tests.factories import make_table
from tests.server.conftest import register


def _drain(client: Any) -> int:
    return int(client.app.state.amoeba.worker.drain())


def _setup(client: Any) -> None:
    token = register(client)
    r = client.post("/v1/devices/dev1/profiles", json=make_table(), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text


def _query(budget: float, metric: str = "tpot", **kw: Any) -> dict[str, Any]:
    return {"device": "dev1", "engine": "torch", "workload": "b1-p16-g8", "budget": {"latency_ms": budget, "metric": metric}, **kw}


def test_search_waits_for_jobs_then_answers_the_exact_optimum(full_client: Any) -> None:
    c = full_client
    _setup(c)
    r = c.post("/v1/search", json=_query(2.5))
    assert r.status_code == 503 and r.headers["Retry-After"] and "fitted" in r.json()["detail"]
    _drain(c)  # refit
    r = c.post("/v1/search", json=_query(2.5))
    assert r.status_code == 503 and "accuracy" in r.json()["detail"]
    _drain(c)  # accuracy table of the whole space
    r = c.post("/v1/search", json=_query(2.5))
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["latency_ms"] <= 2.5 and a["predicted"]["tpot_ms"] == pytest.approx(a["latency_ms"])
    assert a["artifact_url"].endswith(f"/v1/subnets/{a['subnet_id']}/artifact")
    # reference: brute force over the space with the same predictor and cached accuracies
    state = c.app.state.amoeba
    from server.services.search import fit_view

    model = fit_view(state.db, state.search.resolve("dev1", "torch", "b1-p16-g8").fit_id).model
    table = state.accuracy.table()
    feasible = [(table.accuracy(sp), sp.key) for sp in state.accuracy.space if model.estimate(sp).tpot_ms <= 2.5]
    assert a["shape"] == max(feasible)[1] and a["accuracy_score"] == pytest.approx(max(feasible)[0])
    assert a["accuracy_value"] > 1 and a["accuracy_metric"] == "ppl" and a["method"] == "index"
    for n in a["neighbours"]:
        assert n["shape"] != a["shape"]
    # a looser budget never answers a less accurate shape
    b = c.post("/v1/search", json=_query(100.0)).json()
    assert b["accuracy_score"] >= a["accuracy_score"]


def test_infeasible_and_unknowns(full_client: Any) -> None:
    c = full_client
    _setup(c)
    _drain(c)
    r = c.post("/v1/search", json=_query(0.01))
    assert r.status_code == 422
    body = r.json()
    assert body["fastest_ms"] > 0.01 and SubnetSpec.parse(body["fastest_shape"]).num_layers == 2 and "fastest" in body["detail"]
    assert c.post("/v1/search", json={**_query(1.0), "device": "ghost"}).status_code == 404
    assert c.post("/v1/search", json={**_query(1.0), "engine": "tensorrt"}).status_code == 404
    assert c.post("/v1/search", json={**_query(1.0), "workload": "b8-p16-g8"}).status_code == 404
    r = c.post("/v1/search", json={**_query(1.0), "budget": {"latency_ms": -1, "metric": "tpot"}})
    assert r.status_code == 422 and "latency_ms" in str(r.json()["detail"])
    r = c.post("/v1/search", json={**_query(1.0), "budget": {"latency_ms": 1, "metric": "fast"}})
    assert r.status_code == 422 and "metric" in str(r.json()["detail"])
    c.app.state.amoeba.search_log.flush()
    with c.app.state.amoeba.db.session() as s:  # the infeasible query is recorded, with its timing
        rows = s.scalars(select(Search)).all()
        assert len(rows) == 1 and rows[0].feasible is False and rows[0].duration_ms > 0


def test_memory_budget(full_client: Any) -> None:
    c = full_client
    _setup(c)
    _drain(c)
    c.post("/v1/search", json=_query(100.0))
    _drain(c)
    r = c.post("/v1/search", json=_query(100.0, memory_mb=125.0))
    assert r.status_code == 200, r.text
    assert r.json()["predicted"]["peak_mem_mb"] <= 125.0 and r.json()["num_layers"] == 2
    r = c.post("/v1/search", json=_query(100.0, memory_mb=50.0))
    assert r.status_code == 422 and "MB" in r.json()["detail"]


def test_pareto_route(full_client: Any) -> None:
    c = full_client
    _setup(c)
    _drain(c)
    c.post("/v1/search", json=_query(100.0))
    _drain(c)
    r = c.get("/v1/devices/dev1/pareto", params={"engine": "torch", "workload": "b1-p16-g8"})
    assert r.status_code == 200
    pts = r.json()["points"]
    assert len(pts) >= 2
    lat = [p["latency_ms"] for p in pts]
    acc = [p["accuracy_score"] for p in pts]
    assert lat == sorted(lat) and acc == sorted(acc)  # faster → less accurate along the front
    assert c.get("/v1/devices/dev1/pareto", params={"engine": "torch", "workload": "b1-p1-g8"}).status_code == 404


def test_artifact_built_by_worker_streamed_and_loadable(full_client: Any, tmp_path: Path) -> None:
    c = full_client
    _setup(c)
    _drain(c)
    c.post("/v1/search", json=_query(2.5))
    _drain(c)
    a = c.post("/v1/search", json=_query(2.5)).json()
    sid = a["subnet_id"]
    assert c.get(f"/v1/subnets/{sid}").json()["artifact"]["status"] == "not requested"
    r = c.get(f"/v1/subnets/{sid}/artifact")
    assert r.status_code == 202 and int(r.headers["Retry-After"]) > 0
    assert c.get(f"/v1/subnets/{sid}/artifact").status_code == 202  # no second job
    with c.app.state.amoeba.db.session() as s:
        assert len(s.scalars(select(Job).where(Job.kind == "export")).all()) == 1
    assert _drain(c) == 1
    r = c.get(f"/v1/subnets/{sid}/artifact")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-tar"
    sha = hashlib.sha256(r.content).hexdigest()
    assert r.headers["X-Amoeba-SHA256"] == sha and r.headers["ETag"] == f'"{sha}"'
    info = c.get(f"/v1/subnets/{sid}").json()
    assert info["artifact"]["status"] == "ready" and info["artifact"]["sha256"] == sha and info["shape"] == a["shape"]
    assert c.get(f"/v1/subnets/{sid}/artifact", headers={"If-None-Match": f'"{sha}"'}).status_code == 304
    # reused: same bytes, no new job
    assert hashlib.sha256(c.get(f"/v1/subnets/{sid}/artifact").content).hexdigest() == sha and _drain(c) == 0
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    (model_dir,) = list((tmp_path / "x").iterdir())
    from transformers import AutoModelForCausalLM

    from core.export.manifest import verify_export

    assert verify_export(model_dir)
    m = AutoModelForCausalLM.from_pretrained(str(model_dir))
    spec = SubnetSpec.parse(a["shape"])
    assert m.config.num_hidden_layers == spec.num_layers == a["num_layers"]
    assert m.config.num_key_value_heads == max(1, round(2 * spec.attn_width))
    assert c.get("/v1/subnets/999").status_code == 404 and c.get("/v1/subnets/999/artifact").status_code == 404


def test_export_job_survives_a_restart(full_client: Any) -> None:
    """A build interrupted mid-way (job left running, temp files behind) is requeued and finished cleanly."""
    from server.services import jobs
    from server.services.artifacts import clean_stale_builds

    c = full_client
    state = c.app.state.amoeba
    _setup(c)
    _drain(c)
    c.post("/v1/search", json=_query(2.5))
    _drain(c)
    sid = c.post("/v1/search", json=_query(2.5)).json()["subnet_id"]
    assert c.get(f"/v1/subnets/{sid}/artifact").status_code == 202
    with state.db.sessions() as s:  # a worker claims the job... and the process dies
        assert jobs.claim(s) is not None
    art_dir = state.settings.artifacts_path()
    (art_dir / ".build" / f"{sid}-dead").mkdir(parents=True)
    (art_dir / ".half.tar.x.tmp").write_bytes(b"partial")
    assert _drain(c) == 0  # nothing pending: the job is 'running'
    assert state.worker.recover() == 1  # restart
    clean_stale_builds(art_dir)
    assert not (art_dir / ".build").exists() and not list(art_dir.glob(".*.tmp"))
    assert _drain(c) == 1
    r = c.get(f"/v1/subnets/{sid}/artifact")
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == r.headers["X-Amoeba-SHA256"]
    with state.db.session() as s:
        assert s.scalar(select(Artifact.status)) == "ready"


def test_write_tar_is_atomic(tmp_path: Path) -> None:
    from core.export.tar import write_tar

    files = {"a.txt": b"a", "b.bin": b"\0" * 1000}
    dest = tmp_path / "out" / "x.tar"
    sha1, size = write_tar(files, dest, "x")
    assert dest.stat().st_size == size and hashlib.sha256(dest.read_bytes()).hexdigest() == sha1
    assert write_tar(dict(reversed(files.items())), tmp_path / "out" / "y.tar", "x")[0] == sha1  # deterministic
    with tarfile.open(dest) as tar:
        assert [(m.name, m.mtime, m.uid) for m in tar.getmembers()] == [("x/a.txt", 0, 0), ("x/b.bin", 0, 0)]
    import unittest.mock as um

    with um.patch("tarfile.TarFile.addfile", side_effect=OSError("disk full")), pytest.raises(OSError, match="disk full"):
        write_tar(files, tmp_path / "out" / "z.tar", "x")
    assert not (tmp_path / "out" / "z.tar").exists() and not list((tmp_path / "out").glob(".*.tmp"))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_optuna_search_matches_exhaustive(full_client: Any) -> None:
    """With search_method=optuna (study in its own SQLite storage) the answer equals the exhaustive one."""
    c = full_client
    state = c.app.state.amoeba
    _setup(c)
    _drain(c)
    c.post("/v1/search", json=_query(2.5))
    _drain(c)
    exact = c.post("/v1/search", json=_query(2.5)).json()
    state.settings = state.search.settings = state.settings.model_copy(update={"search_method": "optuna", "search_trials": 24})
    tuned = c.post("/v1/search", json=_query(2.5))
    assert tuned.status_code == 200, tuned.text
    assert tuned.json()["shape"] == exact["shape"] and tuned.json()["accuracy_score"] == pytest.approx(exact["accuracy_score"])
    import optuna

    names = [s.study_name for s in optuna.get_all_study_summaries(state.settings.optuna_url())]
    assert len(names) == 1 and names[0].startswith("amoeba-search-")


def test_multi_constraint_budgets_and_objectives(full_client: Any) -> None:
    c = full_client
    _setup(c)
    while c.post("/v1/search", json=_query(100.0)).status_code == 503:
        assert _drain(c) > 0
    loose = c.post("/v1/search", json=_query(100.0)).json()
    r = c.post("/v1/search", json={**_query(100.0), "budget": {"latency_ms": 100.0, "ttft_ms": 10.0, "peak_mem_mb": 135.0}})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["predicted"]["ttft_ms"] <= 10.0 and a["predicted"]["peak_mem_mb"] <= 135.0 and a["accuracy_score"] <= loose["accuracy_score"]
    r = c.post("/v1/search", json={**_query(100.0), "budget": {"latency_ms": 100.0, "ttft_ms": 5.0, "e2e_ms": 6.0}})
    assert r.status_code == 422 and r.json()["reason"] == "limits" and "ttft_ms" in r.json()["detail"]
    r = c.post("/v1/search", json={**_query(100.0), "objective": "memory_latency"})
    assert r.status_code == 422 and "memory budget" in r.json()["detail"]
    r = c.post("/v1/search", json={**_query(100.0, memory_mb=135.0), "objective": "memory_latency"})
    assert r.status_code == 200 and r.json()["objective"] == "memory_latency" and r.json()["predicted"]["peak_mem_mb"] <= 135.0
    r = c.post("/v1/search", json={**_query(100.0), "objective": "memory_latency"})  # its index exists now: still validated
    assert r.status_code == 422 and "memory budget" in r.json()["detail"]
    assert c.post("/v1/search", json={**_query(100.0), "objective": "speed"}).status_code == 422
