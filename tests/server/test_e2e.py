"""End to end against a real uvicorn process: register a device → the agent CLI profiles and uploads →
search → download the artifact → stock transformers loads it with the answered shape."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import ADMIN_TOKEN, AMOEBA, free_port, live_server, server_env


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with live_server(tmp_path) as s:
        yield s.url, s.ckpt


def _poll(fn: Any, ok: int, wait: tuple[int, ...], timeout_s: float = 180) -> httpx.Response:
    deadline = time.time() + timeout_s
    while True:
        r = fn()
        if r.status_code == ok:
            return r  # type: ignore[no-any-return]
        assert r.status_code in wait, r.text
        assert "Retry-After" in r.headers and time.time() < deadline
        time.sleep(min(1.0, float(r.headers["Retry-After"])))


def test_register_profile_search_download(server: tuple[str, Path], tmp_path: Path) -> None:
    url, ckpt = server
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = httpx.post(f"{url}/v1/devices", json={"name": "edge-1", "hardware": {"cpu": "test"}}, headers=admin)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    table = tmp_path / "table.json"
    cmd = [*AMOEBA, "profile", "--engine", "torch", "--workload", "b1-p8-g4", "--model", str(ckpt), "--min-layers", "2", "--widths", "1,0.5",
           "--repetitions", "2", "--warmup", "0", "--out", str(table), "--upload", url, "--device", "edge-1", "--token", token]
    prof = subprocess.run(cmd, env=server_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert prof.returncode == 0, prof.stderr
    dev = httpx.get(f"{url}/v1/devices/edge-1").json()
    assert len(dev["profiles"]) == 1 and dev["profiles"][0]["rows"] == 12
    import json

    tpots = sorted(r["tpot_ms"]["median"] for r in json.loads(table.read_text())["rows"])
    budget = tpots[len(tpots) // 2]
    q = {"device": "edge-1", "engine": "torch", "workload": "b1-p8-g4", "budget": {"latency_ms": budget, "metric": "tpot"}}
    ans = _poll(lambda: httpx.post(f"{url}/v1/search", json=q, timeout=60), 200, (503,)).json()
    assert ans["latency_ms"] <= budget
    art = _poll(lambda: httpx.get(ans["artifact_url"], timeout=60), 200, (202,))
    sha = hashlib.sha256(art.content).hexdigest()
    assert art.headers["X-Amoeba-SHA256"] == sha == httpx.get(f"{url}/v1/subnets/{ans['subnet_id']}").json()["artifact"]["sha256"]
    with tarfile.open(fileobj=io.BytesIO(art.content)) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    (model_dir,) = list((tmp_path / "x").iterdir())
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.spec import SubnetSpec
    from core.strategy.schema import Strategy

    m = AutoModelForCausalLM.from_pretrained(str(model_dir))
    spec, st = SubnetSpec.parse(ans["shape"]), Strategy.load(ckpt / "strategy")
    assert m.config.num_hidden_layers == spec.num_layers
    assert m.config.num_key_value_heads == len(st.attn_groups(spec.attn_width, 0))
    assert m.config.intermediate_size == len(st.ffn_channels(spec.ffn_width, 0))
    tok = AutoTokenizer.from_pretrained(str(model_dir))  # the tokenizer travels with the artifact
    assert m(**tok("the cat sat", return_tensors="pt")).logits.shape[-1] == 97


def test_serve_refuses_unmigrated_database(tmp_path: Path) -> None:
    env = server_env(tmp_path, AMOEBA_DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}", AMOEBA_CHECKPOINT=str(tmp_path / "none"))
    r = subprocess.run([*AMOEBA, "serve", "--no-bootstrap", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "amoeba db upgrade" in r.stderr and "Traceback" not in r.stderr
    cur = subprocess.run([*AMOEBA, "db", "current"], env=env, capture_output=True, text=True, timeout=60)
    assert cur.returncode == 0 and "current: none" in cur.stdout
