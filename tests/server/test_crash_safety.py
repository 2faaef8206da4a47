"""Crash safety: ``kill -9`` of a real server during artifact builds and during an upload burst, then a restart.

After the restart: every artifact is complete and its sha256 matches its ETag, no build directory or temp
archive is left, and every stored profile is whole (its rows and its refit job were written with it).
"""

from __future__ import annotations

import concurrent.futures
import copy
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.server.conftest import ADMIN_TOKEN, add_tokenizer, make_checkpoint
from tests.server.test_e2e import AMOEBA, _env, _free_port


class Served:
    def __init__(self, tmp: Path) -> None:
        from core.checkpoint import open_checkpoint
        from tests.server.test_cli_search import write_table

        self.tmp = tmp
        ckpt = make_checkpoint(tmp)
        calib = add_tokenizer(ckpt)
        opened = open_checkpoint(ckpt)
        self.table = json.loads(write_table(tmp / "table.json", opened.elastic.info, opened.strategy.space).read_text())
        self.db_url = f"sqlite:///{tmp / 'var' / 'amoeba.db'}"
        self.env = _env(tmp, AMOEBA_CHECKPOINT=str(ckpt), AMOEBA_CALIB_TEXT=str(calib), AMOEBA_CALIB_WINDOW="16", AMOEBA_CALIB_MAX_WINDOWS="2",
                        AMOEBA_WORKER_POLL_S="0.05", AMOEBA_ACCESS_LOG="false", AMOEBA_DATABASE_URL=self.db_url)
        assert subprocess.run([*AMOEBA, "db", "upgrade"], env=self.env, capture_output=True, text=True, timeout=120).returncode == 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        port = _free_port()
        self.log = open(self.tmp / f"server-{port}.log", "wb")
        self.proc = subprocess.Popen([*AMOEBA, "serve", "--no-bootstrap", "--port", str(port)], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while True:
            assert self.proc.poll() is None
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self.url
            except httpx.TransportError:
                pass
            assert time.time() < deadline
            time.sleep(0.1)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
            self.log.close()


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
    while not (art_dir / ".build").is_dir() or not any((art_dir / ".build").iterdir()):
        assert time.time() < deadline, "no build started"
        time.sleep(0.002)
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
