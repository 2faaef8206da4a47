"""A bounded schemathesis pass against a real uvicorn on SQLite: 0 server errors, 0 schema violations.

The service runs the tiny checkpoint with a registered device, an uploaded profile and its accuracy table, so
the happy paths exist (searches answer, subnets exist). Then ``schemathesis run`` (every phase: examples,
coverage, fuzzing, stateful) fuzzes every documented operation without credentials, with the admin token and
with the device token, ``AMOEBA_SCHEMATHESIS_EXAMPLES`` cases per operation (default 100; CI may raise it).

Checks: all of schemathesis's except ``positive_data_acceptance`` (ST202), which expects every schema-valid
request to be accepted: here a schema-valid query that no shape can meet is answered 422 *infeasible* (with the
fastest achievable latency), ``objective=memory_latency`` without a memory budget is a 422, and a schema-valid
profile table whose shapes lie outside the served checkpoint's space is a 422 too; each is documented.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.factories import ADMIN_TOKEN, LiveServer, affine_table

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXAMPLES = int(os.environ.get("AMOEBA_SCHEMATHESIS_EXAMPLES", "100"))
pytestmark = pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    from core.checkpoint import open_checkpoint

    server = LiveServer(tmp_path_factory.mktemp("schemathesis"), AMOEBA_ACCESS_LOG="false")
    opened = open_checkpoint(server.ckpt)
    table = affine_table(opened.elastic.info, opened.strategy.space)
    try:
        url = server.start()
        deadline = time.time() + 180
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        token = httpx.post(f"{url}/v1/devices", json={"name": "dev1"}, headers=admin).json()["token"]
        assert httpx.post(f"{url}/v1/devices/dev1/profiles", json=table, headers={"Authorization": f"Bearer {token}"}).status_code == 201
        q = {"device": "dev1", "engine": "torch", "workload": "b1-p16-g8", "budget": {"latency_ms": 3.0}}
        while (r := httpx.post(f"{url}/v1/search", json=q, timeout=30)).status_code != 200:
            assert r.status_code == 503 and time.time() < deadline, r.text
            time.sleep(0.3)
        yield url, token
    finally:
        server.stop()
        assert "Traceback" not in server.log(), server.log()[-3000:]


@pytest.mark.parametrize("auth", ["none", "admin", "device"])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(served: tuple[str, str], auth: str, tmp_path: Path) -> None:
    url, device_token = served
    headers = {"none": [], "admin": ["-H", f"Authorization: Bearer {ADMIN_TOKEN}"], "device": ["-H", f"Authorization: Bearer {device_token}"]}[auth]
    cmd = [str(SCHEMATHESIS), "run", f"{url}/openapi.json", "--checks", "all", "--exclude-checks", "positive_data_acceptance",
           "--max-examples", str(EXAMPLES), "--seed", "1", "--no-color", "--request-timeout", "20", "--generation-database", "none", *headers]
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path, env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    out = res.stdout + res.stderr
    m = re.search(r"(\d+) generated, (\d+) passed", out)
    assert res.returncode == 0 and m is not None, out[-6000:]
    print(f"schemathesis ({auth}): {m.group(1)} cases, all passed, {time.time() - t0:.1f} s")
    assert int(m.group(1)) >= 5 * EXAMPLES
