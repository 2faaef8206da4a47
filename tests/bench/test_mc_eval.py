"""Smoke test of bench/mc_eval.py on the bundled tiny checkpoint and the fixture tasks: results, resume, speed mode."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import mc_eval  # noqa: E402

from core.data.paths import FIXTURES_DIR  # noqa: E402

TINY = ["--checkpoint", str(ROOT / "models/amoeba-tiny-smol"), "--base", str(ROOT / "models/amoeba-tiny-base"),
        "--data-root", str(FIXTURES_DIR / "eval" / "data"), "--threads", "1"]


def run(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["mc_eval.py", *TINY, *args])
    mc_eval.main()


def test_runs_both_variants_resumes_and_measures_speed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mc.json"
    common = ["--tasks", "piqa,boolq,winogrande", "--limit", "3", "--ppl-windows", "1", "--ppl-window", "64", "--out", str(out)]
    run(monkeypatch, "--shapes", "L6-a1-f1", *common)
    doc = json.loads(out.read_text())
    assert set(doc["runs"]) == {"pruned:L6-a1-f1", "amoeba:L6-a1-f1"}
    r = doc["runs"]["amoeba:L6-a1-f1"]
    assert set(r["tasks"]) == {"piqa", "boolq", "winogrande"} and r["tasks"]["piqa"]["n"] == 3
    assert r["wikitext2"]["tokens_scored"] > 0 and 0 <= r["mean_acc_norm"] <= 1
    # the two variants are different models: adapters change the log-likelihoods
    assert r["wikitext2"]["nll"] != doc["runs"]["pruned:L6-a1-f1"]["wikitext2"]["nll"]
    capsys.readouterr()
    run(monkeypatch, "--shapes", "L6-a1-f1", *common)
    assert capsys.readouterr().out.count("skipped") == 2
    run(monkeypatch, "--shapes", "L6-a1-f1", "--speed", "2", *common)
    sp = json.loads(out.read_text())["speed"]
    assert set(sp["tasks"]) == {"piqa", "boolq", "winogrande"} and sp["token_ratio"] >= 1.0
    assert all(t["same_predictions"] == 2 and t["max_abs_dll"] < 1e-3 for t in sp["tasks"].values())
    assert "pruned:L6-a1-f1" in json.loads(out.read_text())["runs"]  # the speed run keeps earlier results
