"""Shape lists, the upload contract, and the ``amoeba profile`` CLI end to end on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from core.errors import ConfigError
from core.spec import SubnetSpec
from profilers.errors import UploadError
from profilers.shapes import GridOptions, read_shapes_file, resolve_shapes, thin
from profilers.source import ModelSource
from profilers.table import load_table, parse_table, save_table
from profilers.upload import profiles_url, upload_file
from tests.factories import free_port, profile_table, run_cli


def test_grid_depth_step_and_thinning(tiny_base: Path) -> None:
    src = ModelSource.open(tiny_base)
    full = resolve_shapes("grid", src, GridOptions(min_layers=1))
    # attention widths come from the model's attention ladder (2 KV groups: 1, 1/2), MLP widths from --widths
    assert src.attn_ladder() == (1.0, 0.5)
    assert len(full) == 4 * 2 * 4 and full[0] == SubnetSpec(4) and full[-1] == SubnetSpec(1, 0.5, 0.625)
    stepped = resolve_shapes("grid", src, GridOptions(min_layers=1, depth_step=2, widths=(1.0, 0.5)))
    assert sorted({s.num_layers for s in stepped}) == [1, 2, 4] and len(stepped) == 12
    few = resolve_shapes("grid", src, GridOptions(min_layers=2, max_shapes=5))
    assert len(few) == 5 and few[0] == SubnetSpec(4) and few[-1] == SubnetSpec(2, 0.5, 0.625)
    explicit = resolve_shapes("grid", src, GridOptions(min_layers=4, widths=(1.0,), attn_widths=(1.0, 0.75, 0.5)))
    assert [s.attn_width for s in explicit] == [1.0, 0.75, 0.5]
    assert thin(full, 1) == [full[0]]
    with pytest.raises(ConfigError, match="exceeds"):
        resolve_shapes("grid", src, GridOptions(min_layers=9))


def test_shapes_file(tmp_path: Path, tiny_base: Path) -> None:
    src = ModelSource.open(tiny_base)
    f = tmp_path / "s.txt"
    f.write_text("# two shapes\nL4-a1-f1\nL2-a0.5-f0.75  # small\nL4-a1.0-f1.0\n")
    assert read_shapes_file(f) == [SubnetSpec(4), SubnetSpec(2, 0.5, 0.75)]
    j = tmp_path / "s.json"
    j.write_text('["L3-a1-f1"]')
    assert resolve_shapes(str(j), src, GridOptions()) == [SubnetSpec(3)]
    f.write_text("L4-a1-f1\nL4-b1\n")
    with pytest.raises(ConfigError, match="entry 2"):
        read_shapes_file(f)
    f.write_text("L5-a1-f1\n")
    with pytest.raises(ConfigError, match="exceed"):
        resolve_shapes(str(f), src, GridOptions())


def _service(store: dict, token: str = "tok"):
    """A transport implementing the service's upload contract (201 new, 200 duplicate, 401, 404, 422)."""

    def handler(req: httpx.Request) -> httpx.Response:
        if req.headers.get("authorization") != f"Bearer {token}":
            return httpx.Response(401, json={"detail": "bad token"})
        parts = req.url.path.split("/")
        if parts[1:3] != ["v1", "devices"] or parts[4] != "profiles" or req.method != "POST":
            return httpx.Response(405)
        if parts[3] != "dev1":
            return httpx.Response(404, json={"detail": "unknown device"})
        try:
            sha = parse_table(req.content).content_sha256()
        except ConfigError as e:
            return httpx.Response(422, json={"detail": [{"loc": ["body", "rows"], "msg": str(e)}]})
        if sha in store:
            return httpx.Response(200, json={"sha256": sha})
        store[sha] = req.content
        return httpx.Response(201, json={"sha256": sha})

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_upload_contract(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    save_table(parse_table(profile_table()), p)
    store: dict = {}
    client = _service(store)
    r1 = upload_file(p, "http://svc", "dev1", "tok", client=client)
    r2 = upload_file(p, "http://svc/", "dev1", "tok", client=client)
    assert (r1.status, r1.http_status, r2.status, r2.http_status) == ("created", 201, "duplicate", 200)
    assert list(store.values()) == [p.read_bytes()]
    with pytest.raises(UploadError, match="bad device token") as e401:
        upload_file(p, "http://svc", "dev1", "nope", client=client)
    assert not e401.value.retryable
    with pytest.raises(UploadError, match="unknown device 'dev2'"):
        upload_file(p, "http://svc", "dev2", "tok", client=client)
    assert profiles_url("http://svc/", "my dev") == "http://svc/v1/devices/my%20dev/profiles"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(profile_table(workload="nope")))
    with pytest.raises(ConfigError, match="workload"):
        upload_file(bad, "http://svc", "dev1", "tok", client=client)


def test_upload_retries_with_bounded_backoff(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    save_table(parse_table(profile_table()), p)
    calls = {"n": 0}

    def flaky(req: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] < 3:
            raise httpx.ConnectError("network down")
        return httpx.Response(201)

    sleeps: list[float] = []
    res = upload_file(p, "http://svc", "dev1", "t", client=httpx.Client(transport=httpx.MockTransport(flaky)), sleep=sleeps.append)
    assert res.attempts == 3 and sleeps == [1.0, 2.0]
    sleeps.clear()
    down = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503, text="down")))
    with pytest.raises(UploadError, match="503") as e:
        upload_file(p, "http://svc", "dev1", "t", client=down, attempts=7, base_delay_s=4, max_delay_s=10, sleep=sleeps.append)
    assert e.value.retryable and sleeps == [4, 8, 10, 10, 10, 10]


def test_cli_profiles_writes_table_and_keeps_it_when_upload_fails(tmp_path: Path, tiny_base: Path) -> None:
    out = tmp_path / "table.json"
    shapes = tmp_path / "shapes.txt"
    shapes.write_text("L4-a1-f1\nL2-a0.5-f0.75\nL1-a0.5-f0.5\n")
    url = f"http://127.0.0.1:{free_port()}"
    res = run_cli("profile", "--engine", "torch", "--workload", "b1-p8-g4", "--shapes", str(shapes), "--model", str(tiny_base),
                              "--out", str(out), "--repetitions", "2", "--max-shapes", "2", "--upload", url, "--device", "dev1",
                              "--token", "secret", "--attempts", "1")
    assert res.exit_code == 2, res.output
    assert "kept at" in res.output and "amoeba profile upload" in res.output and "Traceback" not in res.output
    t = load_table(out)
    assert [r.shape for r in t.rows] == ["L4-a1-f1", "L1-a0.5-f0.5"] and t.device.name == "dev1"
    assert "secret" not in t.command and t.command.startswith("amoeba ")


def test_cli_dry_run_and_errors(tmp_path: Path, tiny_base: Path) -> None:
    res = run_cli("profile", "--engine", "onnxruntime", "--workload", "b1-p8-g4", "--model", str(tiny_base), "--dry-run",
                              "--min-layers", "3", "--widths", "1,0.5")
    assert res.exit_code == 0, res.output
    assert "8 shapes" in res.output and "estimated total" in res.output and "probe L4-a1-f1" in res.output
    bad = run_cli("profile", "--engine", "torch", "--workload", "b1-p8", "--model", str(tiny_base), "--out", str(tmp_path / "x"))
    assert bad.exit_code == 2 and "bad workload key" in bad.output
    miss = run_cli("profile", "--engine", "torch")  # --model defaults to the served checkpoint; --out is needed
    assert miss.exit_code == 2 and "--out" in miss.output
    bias = run_cli("profile", "--engine", "torch", "--workload", "b1-p8-g4", "--model", str(tiny_base), "--bias", "mlp",
                               "--out", str(tmp_path / "z"))
    assert bias.exit_code == 2 and "bad bias modules ['mlp']" in bias.output and not (tmp_path / "z").exists()
    trt = run_cli("profile", "--engine", "tensorrt_llm", "--workload", "b1-p8-g4-fp16", "--model", str(tiny_base),
                              "--out", str(tmp_path / "y"))
    assert trt.exit_code == 2 and "unavailable" in trt.output
    up = run_cli("profile", "upload", str(tmp_path / "none.json"), "--url", "http://x", "--device", "d", "--token", "t")
    assert up.exit_code == 2 and "not found" in up.output
    eng = run_cli("profile", "engines")
    assert "torch: available" in eng.output and "tensorrt_llm: unavailable" in eng.output


def test_cli_fit(tmp_path: Path) -> None:
    from tests.profilers.test_predictor import physical_law, synthetic_table

    t = tmp_path / "t.json"
    save_table(parse_table(synthetic_table(physical_law, noise=0.01)), t)
    res = run_cli("profile", "fit", str(t), "--out", str(tmp_path / "p.json"))
    assert res.exit_code == 0, res.output
    assert "tpot_ms: physical (held-out MAPE" in res.output and (tmp_path / "p.json").is_file()
