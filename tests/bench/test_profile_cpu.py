"""bench/profile_cpu.py summaries on a synthetic grid: side-by-side ratios, predictor summary, adaptive replay."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from profilers.table import parse_table
from tests.profilers.test_predictor import physical_law, synthetic_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("profile_cpu", ROOT / "bench" / "profile_cpu.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["profile_cpu"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_speedups_predictor_and_adaptive_summaries(bench) -> None:
    d = synthetic_table(physical_law, depths=range(2, 13, 2), noise=0.01)
    for r in d["rows"]:
        r["measure_s"] = 1.0
    t = parse_table(d)
    sp = bench.speedups(t, "tiny")
    full, slim = t.row("L12-a1-f1"), t.row("L12-a0.625-f0.625")
    assert sp["per_depth"]["12"]["tpot_w1_over_narrow"] == round(full.tpot_ms.median / slim.tpot_ms.median, 3) > 1
    assert sp["half_depth"]["half"] == 6 and sp["half_depth"]["tpot_full_over_half"] > 1.5
    pred = bench.predictor_summary(t)
    assert pred["tpot_ms"]["chosen"] in ("physical", "hybrid", "knn") and pred["fit"]["table_sha256"] == t.content_sha256()
    ad = bench.adaptive_benchmark(t, pred)
    assert ad["full_grid"]["shapes"] == 96 and ad["bar_5pct_95pct"]["stop"] == "target met"
    assert ad["bar_5pct_95pct"]["shapes"] < 96 and ad["bar_5pct_95pct"]["unmeasured_tpot_ms"]["mape_pct"] < 5


def test_report_renders_every_section(bench) -> None:
    spec = importlib.util.spec_from_file_location("latency_report", ROOT / "bench" / "latency_report.py")
    rep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rep)
    d = synthetic_table(physical_law, depths=range(2, 13, 2), noise=0.01)
    for r in d["rows"]:
        r["measure_s"] = 1.0
    t = parse_table(d)
    pred = bench.predictor_summary(t)
    flow = {"command": "python bench/profile_cpu.py --flows tiny/torch", "shapes": 96, "busy_rows": 0, "remeasured_rounds": 0,
            "load_avg_before": [0.1, 0, 0], "load_avg_after": [0.2, 0, 0], "quiet_flag_at_start": True, "noise_floor": None,
            "predictor": pred, "adaptive": bench.adaptive_benchmark(t, pred), "speedups": bench.speedups(t, "tiny")}
    md = rep.render({"flows": {"tiny/torch": flow, "tiny/llamacpp": {"unavailable": "llama_cpp is not installed"}}})
    assert "| tiny/torch | 96 | 0 / 0 | 0.1 → 0.2 (yes)" in md and "unavailable: llama_cpp is not installed" in md
    assert "L12/L6:" in md and "target met" in md and "`python bench/profile_cpu.py --flows tiny/torch`" in md


def test_merge_keeps_every_other_flow_and_resume_runs_only_what_is_missing(bench, tmp_path: Path) -> None:
    import json

    out = tmp_path / "latency_cpu.json"
    old = {"schema": bench.SCHEMA, "tables": {"torch": {"t": 1}},
           "flows": {"tiny/torch": {"workload": "b1-p128-g64", "table": {"t": 1}},
                     "smollm2/llamacpp:q8_0": {"workload": "b1-p128-g64-q8_0", "table": {"t": 2}},
                     "smollm2/onnxruntime": {"unavailable": "onnxruntime is not installed"}}}
    out.write_text(json.dumps(old))
    flows = ["smollm2/llamacpp:q8_0", "smollm2/onnxruntime", "smollm2/torch", "tiny/torch"]
    assert bench.pending_flows(old, flows, "b1-p128-g64") == ["smollm2/onnxruntime", "smollm2/torch"]
    assert bench.pending_flows(old, flows, "b1-p64-g32") == flows  # another workload: nothing measured yet
    assert bench.pending_flows({"schema": "old", "flows": old["flows"]}, flows, "b1-p128-g64") == flows
    bench.merge_flow(out, "smollm2/torch", {"workload": "b1-p128-g64", "table": {"t": 3}})
    doc = json.loads(out.read_text())
    assert doc["flows"]["tiny/torch"] == old["flows"]["tiny/torch"] and doc["flows"]["smollm2/llamacpp:q8_0"] == old["flows"]["smollm2/llamacpp:q8_0"]
    assert doc["flows"]["smollm2/torch"]["table"] == {"t": 3} and doc["tables"] == {"torch": {"t": 1}}  # only tiny tables go to tables
    bench.merge_flow(out, "tiny/onnxruntime", {"workload": "b1-p128-g64", "table": {"t": 4}})
    assert json.loads(out.read_text())["tables"] == {"torch": {"t": 1}, "onnxruntime": {"t": 4}}
    assert bench.pending_flows(json.loads(out.read_text()), flows, "b1-p128-g64") == ["smollm2/onnxruntime"]
    before = out.read_text()  # an engine unavailable on this machine never wipes a flow measured elsewhere
    assert bench.merge_flow(out, "smollm2/llamacpp:q8_0", {"unavailable": "llama_cpp is not installed"}) is False and out.read_text() == before
    assert bench.merge_flow(out, "smollm2/onnxruntime", {"unavailable": "still not installed"}) is True


def test_flows_are_checked_before_measuring(bench) -> None:
    assert bench.parse_flows("smollm2/torch, tiny/llamacpp:q8_0,") == ["smollm2/torch", "tiny/llamacpp:q8_0"]
    assert bench.flow_workload("tiny/llamacpp:q8_0", "b1-p128-g64").key == "b1-p128-g64-q8_0"
    with pytest.raises(SystemExit, match="bad flow 'big/torch'"):
        bench.parse_flows("big/torch")
    assert bench.missing_models(["tiny/torch"]) == []
