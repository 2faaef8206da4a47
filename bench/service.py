"""Service load benchmark: warm ``POST /v1/search`` against a real uvicorn, on SQLite and on PostgreSQL.

For each database: migrate a fresh one (a temp SQLite file; a fresh schema in the ``test`` database at
127.0.0.1:5432), start ``amoeba serve --no-bootstrap`` (one uvicorn process: its event loop plus the anyio
thread pool for the sync routes, and one job-worker thread), register a device, upload the committed CPU torch
table of the bundled checkpoint (its in-space rows), wait until a search answers (refit + the accuracy table),
then run a bounded asyncio load generator on 127.0.0.1: ``--requests`` warm searches at each concurrency
(keep-alive connections, one per concurrent client, a mix of feasible budgets on tpot / ttft / e2e). Reported
per run: req/s, p50 / p90 / p99 / max latency, status counts, transport errors, the server's CPU seconds and the
load average before / after. Then 50 concurrent agent uploads (25 distinct tables, each twice at once): every
pair must give one 201 and one 200 and the database must hold exactly the 25 new profiles.

The client runs on the same machine as the server (and whatever else runs there): numbers are ratios and trends.

    python bench/service.py                                  # SQLite and PostgreSQL, c = 8, 32, 64, 2000 requests each
    python bench/service.py --dbs sqlite --requests 500 --out /tmp/service.json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from core.atomic import write_json  # noqa: E402

AMOEBA = [sys.executable, "-c", "from cli.app import main; main()"]
ADMIN = "bench-admin-token-0123456789"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TABLE = ROOT / "bench" / "results" / "latency_cpu.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_table() -> dict[str, Any]:
    """The committed torch CPU table of the bundled checkpoint, restricted to the checkpoint's shape space."""
    from server.runtime import read_identity
    from server.settings import default_checkpoint

    space = read_identity(default_checkpoint()).space
    doc = json.loads(TABLE.read_text())["tables"]["torch"]
    doc["rows"] = [r for r in doc["rows"] if _in_space(space, r["shape"])]
    doc["device"]["name"] = "bench-cpu"
    return dict(doc)


def _in_space(space: Any, key: str) -> bool:
    from core.errors import ConfigError

    try:
        space.validate(key)
    except ConfigError:
        return False
    return True


class Server:
    """``amoeba serve`` in a subprocess on a fresh database."""

    def __init__(self, db: str, work: Path, workers: int = 1) -> None:
        self.db, self.work, self.port = db, work, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.schema: str | None = None
        if db == "sqlite":
            self.db_url = f"sqlite:///{work / 'amoeba.db'}"
        else:
            import sqlalchemy as sa

            self.schema = f"bench_{uuid.uuid4().hex[:10]}"
            eng = sa.create_engine(PG_ADMIN_URL)
            with eng.begin() as c:
                c.execute(sa.text(f'CREATE SCHEMA "{self.schema}"'))
            eng.dispose()
            self.db_url = f"{PG_ADMIN_URL}?options=-csearch_path%3D{self.schema}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AMOEBA_")}
        self.env.update({"AMOEBA_VAR_DIR": str(work / "var"), "AMOEBA_DATABASE_URL": self.db_url, "AMOEBA_ADMIN_TOKEN": ADMIN,
                         "AMOEBA_ACCESS_LOG": "false", "AMOEBA_WORKER_THREADS": str(workers), "OMP_NUM_THREADS": "1"})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        up = subprocess.run([*AMOEBA, "db", "upgrade"], env=self.env, capture_output=True, text=True, timeout=300)
        if up.returncode != 0:
            raise RuntimeError(up.stderr)
        self.log = open(self.work / "server.log", "wb")
        self.proc = subprocess.Popen([*AMOEBA, "serve", "--no-bootstrap", "--port", str(self.port)], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline:
            assert self.proc.poll() is None, (self.work / "server.log").read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError("server did not start")

    def cpu_s(self) -> float:
        assert self.proc is not None
        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(60)
            self.log.close()
        if self.schema is not None:
            import sqlalchemy as sa

            eng = sa.create_engine(PG_ADMIN_URL)
            with eng.begin() as c:
                c.execute(sa.text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            eng.dispose()


def prepare(server: Server, table: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Register the device, upload the table, wait until searches answer; returns the device token and query bodies."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    r = httpx.post(f"{server.url}/v1/devices", json={"name": "bench-cpu", "hardware": {}}, headers=admin, timeout=30)
    r.raise_for_status()
    token = r.json()["token"]
    r = httpx.post(f"{server.url}/v1/devices/bench-cpu/profiles", json=table, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    r.raise_for_status()
    base = {"device": "bench-cpu", "engine": "torch", "workload": table["workload"]}
    deadline = time.time() + 1800
    while True:
        r = httpx.post(f"{server.url}/v1/search", json={**base, "budget": {"latency_ms": 1e6}}, timeout=60)
        if r.status_code == 200:
            break
        if r.status_code != 503 or time.time() > deadline:
            raise RuntimeError(f"search not ready: {r.status_code} {r.text}")
        time.sleep(1.0)
    bodies: list[dict[str, Any]] = []
    for metric in ("tpot", "ttft", "e2e"):
        fastest = httpx.post(f"{server.url}/v1/search", json={**base, "budget": {"latency_ms": 1e-3, "metric": metric}}, timeout=60).json()["fastest_ms"]
        slowest = httpx.post(f"{server.url}/v1/search", json={**base, "budget": {"latency_ms": 1e6, "metric": metric}}, timeout=60).json()["latency_ms"]
        for i in range(8):
            bodies.append({**base, "budget": {"latency_ms": round(fastest + (slowest - fastest) * (i + 0.5) / 8 + 1e-3, 4), "metric": metric}})
    return token, bodies


async def _worker(host: str, port: int, jobs: asyncio.Queue[bytes], lat: list[float], status: Counter[str], errors: Counter[str]) -> None:
    """One keep-alive HTTP/1.1 connection sending requests one after another (minimal client: low overhead)."""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while True:
        try:
            req = jobs.get_nowait()
        except asyncio.QueueEmpty:
            break
        t0 = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            writer.write(req)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
            code = head.split(b" ", 2)[1].decode()
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip())
                elif k.strip().lower() == b"connection" and v.strip().lower() == b"close":
                    close = True
            await asyncio.wait_for(reader.readexactly(length), 60)
            lat.append(time.perf_counter() - t0)
            status[code] += 1
            if close:
                writer.close()
                reader = writer = None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as e:
            errors[type(e).__name__] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def _request(body: dict[str, Any], port: int) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


async def load(port: int, bodies: list[dict[str, Any]], n: int, concurrency: int) -> dict[str, Any]:
    jobs: asyncio.Queue[bytes] = asyncio.Queue()
    reqs = [_request(b, port) for b in bodies]
    for i in range(n):
        jobs.put_nowait(reqs[i % len(reqs)])
    lat: list[float] = []
    status: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    t0 = time.perf_counter()
    await asyncio.gather(*(_worker("127.0.0.1", port, jobs, lat, status, errors) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [float("nan")] * 99
    return {"requests": n, "concurrency": concurrency, "wall_s": round(wall, 3), "req_per_s": round(len(lat) / wall, 1),
            "p50_ms": round(q[49] * 1000, 2), "p90_ms": round(q[89] * 1000, 2), "p99_ms": round(q[98] * 1000, 2),
            "max_ms": round(max(lat) * 1000, 2) if lat else None, "status": dict(status), "transport_errors": dict(errors),
            "ok": status.get("200", 0), "errors": n - status.get("200", 0)}


def uploads(server: Server, token: str, table: dict[str, Any], distinct: int = 25) -> dict[str, Any]:
    """``distinct`` new tables, each uploaded twice at once (2·distinct concurrent requests)."""
    import copy

    docs = []
    for i in range(distinct):
        d = copy.deepcopy(table)
        d["rows"][0]["tpot_ms"]["median"] = d["rows"][0]["tpot_ms"]["median"] * (1 + (i + 1) * 1e-6)
        d["rows"][0]["tpot_ms"]["p90"] = max(d["rows"][0]["tpot_ms"]["p90"], d["rows"][0]["tpot_ms"]["median"])
        d["command"] = f"bench upload {i}"
        docs.append(d)

    async def run() -> list[tuple[int, dict[str, Any] | str]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=httpx.Limits(max_connections=2 * distinct)) as c:
            async def one(d: dict[str, Any]) -> tuple[int, dict[str, Any] | str]:
                try:
                    r = await c.post("/v1/devices/bench-cpu/profiles", json=d, headers={"Authorization": f"Bearer {token}"})
                    return r.status_code, r.json()
                except httpx.HTTPError as e:
                    return -1, type(e).__name__
            return list(await asyncio.gather(*(one(d) for d in docs + docs)))

    before = len(httpx.get(f"{server.url}/v1/devices/bench-cpu", timeout=30).json()["profiles"])
    t0 = time.perf_counter()
    res = asyncio.run(run())
    wall = time.perf_counter() - t0
    after = httpx.get(f"{server.url}/v1/devices/bench-cpu", timeout=30).json()["profiles"]
    codes = Counter(str(c) for c, _ in res)
    by_sha: dict[str, list[int]] = {}
    for c, body in res:
        if isinstance(body, dict) and "content_sha256" in body:
            by_sha.setdefault(body["content_sha256"], []).append(c)
    pairs_ok = sum(1 for v in by_sha.values() if sorted(v) == [200, 201])
    shas = [p["content_sha256"] for p in after]
    return {"uploads": len(res), "distinct": distinct, "wall_s": round(wall, 3), "status": dict(codes), "pairs_201_and_200": pairs_ok,
            "profiles_added": len(after) - before, "duplicated_rows": len(shas) - len(set(shas)),
            "lost": distinct - (len(after) - before), "ok": pairs_ok == distinct and len(after) - before == distinct and len(shas) == len(set(shas))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dbs", default="sqlite,postgres")
    ap.add_argument("--concurrency", default="8,32,64")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "service.json")
    args = ap.parse_args()
    table = bench_table()
    doc: dict[str, Any] = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "machine": {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg()},
        "server": "amoeba serve: 1 uvicorn process (asyncio loop + anyio thread pool of 40 for the sync routes), 1 job-worker thread, access log off",
        "client": "bounded asyncio HTTP/1.1 keep-alive client in this process, one connection per concurrent client, 127.0.0.1 only",
        "profile_rows": len(table["rows"]),
        "runs": {},
    }
    for db in args.dbs.split(","):
        with tempfile.TemporaryDirectory(prefix=f"amoeba-bench-{db}-") as tmp:
            server = Server(db, Path(tmp))
            try:
                server.start()
                t0 = time.perf_counter()
                token, bodies = prepare(server, table)
                run: dict[str, Any] = {"db_url": server.db_url.split("?")[0], "ready_s": round(time.perf_counter() - t0, 1), "levels": []}
                asyncio.run(load(server.port, bodies, args.warmup, 8))
                for c in (int(x) for x in args.concurrency.split(",")):
                    la0, cpu0 = os.getloadavg(), server.cpu_s()
                    res = asyncio.run(load(server.port, bodies, args.requests, c))
                    res.update({"server_cpu_s": round(server.cpu_s() - cpu0, 2), "load_avg_before": la0, "load_avg_after": os.getloadavg()})
                    run["levels"].append(res)
                    print(f"{db} c={c}: {res['req_per_s']} req/s p50 {res['p50_ms']} ms p99 {res['p99_ms']} ms errors {res['errors']} "
                          f"{res['status']} {res['transport_errors']} load {res['load_avg_after'][0]:.2f}", file=sys.stderr)
                run["uploads"] = uploads(server, token, table)
                print(f"{db} uploads: {run['uploads']}", file=sys.stderr)
                doc["runs"][db] = run
            finally:
                server.stop()
    doc["machine"]["load_avg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, doc)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
