"""A Stage 1 run's record as a committed result: what ``amoeba calibrate`` measured while it ran.

Reads a strategy directory (its ``strategy.json`` meta: calibration tokens, DP evaluations, layer-forwards with
and without the prefix cache, wall time per phase, calibration perplexity per depth, kept layers and kept unit
counts) and writes it with the command that produced it → ``bench/results/stage1_<model>.json``.

Usage: python bench/stage1_summary.py STRATEGY_DIR --command "amoeba calibrate ..." [--depth-command "..."] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common_eval import save_json  # noqa: E402
from core.spec import format_width  # noqa: E402
from core.strategy.depth_dp import dp_evaluations  # noqa: E402
from core.strategy.schema import Strategy  # noqa: E402


def summary(st: Strategy) -> dict[str, Any]:
    """The measured facts of a strategy's Stage 1 run (from its metadata) plus its shape space."""
    m, sp = st.meta, st.space
    lf = m.get("layer_forwards", {})
    reused = m.get("depth_reused_from")
    return {
        "model": st.model.to_dict(),
        "model_sha256": st.model_sha256,
        "space": {**sp.to_dict(), "attn_widths": list(sp.attn_ladder), "shapes": len(sp)},
        "attn_unit": st.attn_unit,
        "allocation": st.allocation,
        "bias_modules": list(st.bias_modules),
        "keep_last": st.keep_last,
        "calibration": {"tokens": m.get("tokens_used"), "windows": m.get("num_windows"), "calib_sha256": m.get("calib_sha256"),
                        "calib_tokens_sha256": m.get("calib_tokens_sha256")},
        "dp": {
            "evaluations": m.get("dp_evaluations"),
            "evaluations_formula": dp_evaluations(st.model.num_layers, sp.min_layers, st.keep_last),
            "layer_forwards_cached": lf.get("cached"),
            "layer_forwards_uncached": lf.get("uncached"),
            "cache_ratio": round(lf["uncached"] / lf["cached"], 3) if lf.get("cached") else None,
            "calibration_perplexity_by_depth": m.get("dp_perplexity"),
            "wall_s": (reused or {}).get("wall_s") if reused else m.get("wall_s"),
        },
        "width_wall_s": m.get("wall_s"),
        "kept_layers": {str(k): list(v) for k, v in sorted(st.depth.items())},
        "removed_layers": {str(k): [i for i in range(st.model.num_layers) if i not in v] for k, v in sorted(st.depth.items())},
        "kept_counts": m.get("kept_counts"),
        "ladders_text": {"attn": [format_width(w) for w in sp.attn_ladder], "ffn": [format_width(w) for w in sp.widths]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("strategy", type=Path)
    ap.add_argument("--command", required=True, help="the amoeba calibrate command that wrote STRATEGY_DIR")
    ap.add_argument("--depth-command", default=None, help="the command of the DP run whose depth was reused (--depth-from)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    st = Strategy.load(a.strategy)
    doc = {"commands": [c for c in (a.depth_command, a.command) if c], **summary(st)}
    out = a.out or ROOT / "bench" / "results" / f"stage1_{st.model.model_type}_{st.model.num_layers}l.json"
    save_json(out, doc)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
