"""Crash safety: ``kill -9`` of a real server during artifact builds and during an upload burst, then a restart.

After the restart: every artifact is complete and its sha256 matches its ETag, no build directory or temp
archive is left, and every stored profile is whole (its rows and its refit job were written with it).
"""

from __future__ import annotations

import concurrent.futures
import copy
import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.factories import ADMIN_TOKEN, LiveServer, affine_table


class Served(LiveServer):
    """The crash-test server: a fast worker poll and the tiny checkpoint's affine profile table."""

    def __init__(self, tmp: Path) -> None:
        from core.checkpoint import open_checkpoint

        super().__init__(tmp, poll_s="0.05", AMOEBA_ACCESS_LOG="false")
        opened = open_checkpoint(self.ckpt)
        self.table = affine_table(opened.elastic.info, opened.strategy.space)

    def start(self, *, ready: str = "/healthz", timeout_s: float = 180) -> str:
        return super().start(ready=ready, timeout_s=timeout_s)


def _search_until_ready(url: str, budget: float) -> dict[str, Any]:
    q = {"device": "dev1", "engine": "torch", "workload": "b1-p16-g8", "budget": {"latency_ms": budget}}
    deadline = time.time() + 180
    while (r := httpx.post(f"{url}/v1/search", json=q, timeout=30)).status_code != 200:
        assert r.status_code in (503, 422) and time.time() < deadline, r.text
        if r.status_code == 422:
            return {}
        time.sleep(0.1)
    return dict(r.json())


@pytest.fixture
def served(tmp_path: Path) -> Any:
    s = Served(tmp_path)
    yield s
    s.stop()


def test_kill9_during_builds_and_uploads_then_restart(served: Served) -> None:
    url = served.start()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    token = httpx.post(f"{url}/v1/devices", json={"name": "dev1"}, headers=admin).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{url}/v1/devices/dev1/profiles", json=served.table, headers=auth).status_code == 201
    answers = [a for b in (1.6, 2.0, 2.5, 3.0, 100.0) if (a := _search_until_ready(url, b))]
    subnets = sorted({a["subnet_id"] for a in answers})
    assert len(subnets) >= 2
    art_dir = served.tmp / "var" / "artifacts"

    # 1. kill -9 while an export is being built
    for sid in subnets:
        assert httpx.get(f"{url}/v1/subnets/{sid}/artifact", timeout=30).status_code == 202
    deadline = time.time() + 60
    engine = sa.create_engine(served.db_url)

    def building() -> bool:  # an export is being built (extracting, or streaming its archive)
        with engine.connect() as c:
            return bool(c.execute(sa.text("SELECT count(*) FROM artifacts WHERE status = 'building'")).scalar()) or bool(list(art_dir.glob(".*.tmp")))

    while not building():
        assert time.time() < deadline, "no build started"
        time.sleep(0.002)
    engine.dispose()
    served.kill9()

    # 2. kill -9 during an upload burst (restart first: the job table requeues the interrupted build)
    url = served.start()
    docs = []
    for i in range(24):
        d = copy.deepcopy(served.table)
        d["rows"][0]["tpot_ms"]["median"] *= 1 + (i + 1) * 1e-6
        d["rows"][0]["tpot_ms"]["p90"] = max(d["rows"][0]["tpot_ms"]["p90"], d["rows"][0]["tpot_ms"]["median"])
        docs.append(d)

    def upload(d: dict[str, Any]) -> int:
        try:
            return httpx.post(f"{url}/v1/devices/dev1/profiles", json=d, headers=auth, timeout=30).status_code
        except httpx.TransportError:
            return -1

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(upload, d) for d in docs]
        time.sleep(0.15)
        served.kill9()
        codes = [f.result() for f in futures]
    assert -1 in codes  # the burst was cut

    # 3. restart: complete artifacts, no temp leftovers, no half-stored profile
    url = served.start()
    for sid in subnets:
        deadline = time.time() + 180
        while (r := httpx.get(f"{url}/v1/subnets/{sid}/artifact", timeout=60)).status_code == 202:
            assert time.time() < deadline
            time.sleep(0.2)
        assert r.status_code == 200, r.text
        sha = hashlib.sha256(r.content).hexdigest()
        assert r.headers["ETag"] == f'"{sha}"' == f'"{r.headers["X-Amoeba-SHA256"]}"'
    assert not (art_dir / ".build").exists() or not any((art_dir / ".build").iterdir())
    assert not list(art_dir.glob(".*.tmp"))
    engine = sa.create_engine(served.db_url)
    with engine.connect() as c:
        profiles = c.execute(sa.text("SELECT id, num_rows FROM profiles")).all()
        for pid, n in profiles:
            rows = c.execute(sa.text("SELECT count(*) FROM profile_rows WHERE profile_id = :p"), {"p": pid}).scalar()
            jobs = c.execute(sa.text("SELECT count(*) FROM jobs WHERE key = :k"), {"k": f"refit:{pid}"}).scalar()
            assert rows == n == len(served.table["rows"]) and jobs == 1, (pid, rows, n, jobs)
        stored = c.execute(sa.text("SELECT count(*) FROM profiles")).scalar()
    engine.dispose()
    assert stored >= 1 + sum(1 for x in codes if x == 201)  # every acknowledged upload survived
