"""bench/stage1_summary.py: a strategy's Stage 1 record becomes a result file with its command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from core.model.loader import ModelInfo
from core.strategy.schema import naive_strategy

ROOT = Path(__file__).resolve().parents[2]


def test_summary_of_a_strategy(tmp_path: Path) -> None:
    info = ModelInfo("llama", 6, 96, 6, 3, 16, 128, 97, True, False, 128)
    st = naive_strategy(info, "sha", 3, (1.0, 0.75), attn_widths=(1.0, 2 / 3, 1 / 3))
    st.meta = {"tokens_used": 64, "dp_evaluations": 12, "layer_forwards": {"cached": 40, "uncached": 80}, "wall_s": {"depth": 1.5}}
    st.save(tmp_path / "st")
    out = tmp_path / "s1.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "stage1_summary.py"), str(tmp_path / "st"), "--command", "amoeba calibrate x", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["commands"] == ["amoeba calibrate x"] and d["dp"]["cache_ratio"] == 2.0 and d["dp"]["evaluations_formula"] == 12
    assert d["space"]["shapes"] == 4 * 3 * 2 and d["ladders_text"]["attn"] == ["1", "0.666667", "0.333333"]
    assert d["removed_layers"]["3"] == [2, 3, 4] and d["kept_layers"]["6"] == list(range(6))
