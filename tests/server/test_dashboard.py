"""Admin dashboard: auth, pages, plotly served locally, and a headless-Chromium check that the plot drew."""

from __future__ import annotations

import base64
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories import ADMIN_TOKEN, make_table
from tests.server.conftest import register

BASIC = {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN_TOKEN}".encode()).decode()}


def _ready(c: Any) -> None:
    """A device with a fitted predictor and a filled accuracy table."""
    token = register(c, "dev1")
    assert c.post("/v1/devices/dev1/profiles", json=make_table(), headers={"Authorization": f"Bearer {token}"}).status_code == 201
    c.app.state.amoeba.worker.drain()
    q = {"device": "dev1", "engine": "torch", "workload": "b1-p16-g8", "budget": {"latency_ms": 2.5, "metric": "tpot"}}
    assert c.post("/v1/search", json=q).status_code == 503
    c.app.state.amoeba.worker.drain()
    assert c.post("/v1/search", json=q).status_code == 200
    assert c.post("/v1/search", json={**q, "budget": {"latency_ms": 0.01, "metric": "tpot"}}).status_code == 422


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_pages_need_admin_and_render(full_client: Any) -> None:
    c = full_client
    _ready(c)
    r = c.get("/admin")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    assert c.get("/admin", headers={"Authorization": "Basic " + base64.b64encode(b"admin:wrong").decode()}).status_code == 401
    page = c.get("/admin", headers=BASIC)
    assert page.status_code == 200 and "dev1" in page.text and "b1-p16-g8" in page.text and "infeasible" in page.text
    dev = c.get("/admin/devices/dev1", headers=BASIC)
    assert dev.status_code == 200 and 'class="pareto-plot"' in dev.text and "Pareto front" in dev.text
    sha = c.app.state.amoeba.runtime.sha256
    assert "llama L4 h64 heads4/kv2 d16 ffn128 vocab97" in dev.text and sha[:12] in dev.text  # the model and checkpoint of each profile
    assert sha[:12] in page.text and "ffn128" in page.text
    assert "cdn" not in dev.text.lower() and '<script src="/static/plotly.min.js">' in dev.text
    assert c.get("/admin/devices/ghost", headers=BASIC).status_code == 404
    assert c.get("/admin/searches", headers=BASIC).text.count("<tr>") == 3  # header + 2 searches
    js = c.get("/static/plotly.min.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("application/javascript") and len(js.content) > 1_000_000


@pytest.fixture
def live(full_client: Any) -> Iterator[str]:
    """The same app served by uvicorn in a thread (for the browser)."""
    import uvicorn

    from tests.factories import free_port

    _ready(full_client)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(full_client.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (apt-get install chromium); CI installs it")
def test_plot_draws_in_headless_chromium(live: str, tmp_path: Path) -> None:
    url = live.replace("http://", f"http://admin:{ADMIN_TOKEN}@") + "/admin/devices/dev1"
    cmd = [str(_chromium()), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=10000", "--dump-dom", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    dom = out.stdout
    assert 'class="pareto-plot' in dom, out.stderr[-2000:]
    assert "main-svg" in dom and "scatterlayer" in dom, "plotly did not draw the figure"
    assert dom.count('class="trace scatter') >= 2  # the shapes and the front
