"""Smoke test of bench/stage1.py on a tiny model (the decode pass shares shapes between pairs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from transformers import AutoTokenizer

from core.data.paths import FIXTURES_DIR, REPO_ROOT
from tests.conftest import make_tiny


def test_stage1_bench_runs_and_reports(tmp_path: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(FIXTURES_DIR / "eval" / "tokenizer"))
    model_dir = tmp_path / "m"
    make_tiny(vocab=len(tok), layers=4, hidden=64, heads=4, kv=4, inter=128).save_pretrained(str(model_dir))
    tok.save_pretrained(str(model_dir))
    (model_dir / "calibration.txt").write_text((FIXTURES_DIR / "eval" / "data" / "wikitext2" / "test.txt").read_text() * 2)
    out = tmp_path / "stage1.json"
    cmd = [sys.executable, str(REPO_ROOT / "bench" / "stage1.py"), "--model", str(model_dir), "--min-layers", "2", "--window", "32",
           "--tokens", "256", "--reps", "1", "--workload", "b1-p8-g4", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    dp = res["depth_dp"]
    assert dp["same_answer"] is True and dp["with_cache"]["layer_forwards_run"] < dp["without_cache"]["layer_forwards_run"]
    # 4 KV groups: attention ladder 1, 3/4, 1/2, 1/4 (the model's own); MLP 1, 7/8, 3/4, 5/8
    assert set(res["export"]) == {"L4-a1-f1", "L4-a0.25-f0.625", "L2-a0.5-f0.75"}
    assert all(v["export_s_median"] > 0 and v["save_pretrained_s_median"] > 0 for v in res["export"].values())
    pairs = [k for k in res["decode"] if k != "workload"]
    assert len(pairs) == 4 and all(res["decode"][k]["decode_speedup"] > 0 for k in pairs)
