"""Which attention unit should Stage 1 prune on a GQA model: whole KV groups or query heads inside every group?
→ ``bench/results/attn_unit_<model>.json``.

Both units are selected by the same FLAP fluctuation scores from one calibration pass over the dense model
(the Stage 1 calibration text), with attention compensation biases, at every attention width of the model's
ladder, all layers narrowed, MLP and depth full. Each shape is scored on held-out text (the corpus validation
books and WikiText-2 test, never the calibration text). Units keep different parameter counts at the same
width (a KV group also carries K/V rows), so the comparison is at equal attention parameters: log-perplexity
is interpolated linearly in attention parameters along each unit's curve, at every point of the other's.

Usage: python bench/attn_unit.py --model models/smollm2-135m [--calib-text FILE] [--calib-tokens 8192]
       [--max-windows 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common_eval import EvalSettings, heldout_text, load_avg, load_streams, save_json  # noqa: E402
from core.baselines.params import layer_params  # noqa: E402
from core.data.paths import data_dir as resolve_data_dir  # noqa: E402
from core.data.tokens import tokenize_file  # noqa: E402
from core.elastic.model import ElasticModel  # noqa: E402
from core.model.loader import load_base_model, weights_sha256  # noqa: E402
from core.spec import SubnetSpec, format_width  # noqa: E402
from core.strategy.calibrate import calibration_windows  # noqa: E402
from core.strategy.schema import Strategy  # noqa: E402
from core.strategy.units import ATTN_UNITS, default_attn_ladder, kept_heads  # noqa: E402
from core.strategy.width import ChannelStatsRecorder, select_widths  # noqa: E402


def interpolate(x: float, xs: list[float], ys: list[float]) -> float | None:
    """Linear interpolation of ``ys`` over ``xs`` at ``x`` (``None`` outside the range)."""
    order = np.argsort(xs)
    xa, ya = np.asarray(xs)[order], np.asarray(ys)[order]
    if not xa[0] - 1e-9 <= x <= xa[-1] + 1e-9:
        return None
    return float(np.interp(x, xa, ya))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "smollm2-135m")
    ap.add_argument("--calib-text", type=Path, default=ROOT / "models" / "amoeba-tiny-base" / "calibration.txt")
    ap.add_argument("--calib-tokens", type=int, default=8192)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--max-windows", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0, load0 = time.perf_counter(), load_avg()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(a.model))
    hf, info = load_base_model(a.model)
    em = ElasticModel(hf)
    with tempfile.TemporaryDirectory() as tmp:
        calib = calibration_windows(tokenize_file(a.calib_text, tok, cache_dir=Path(tmp)), a.window, a.calib_tokens)
        heldout = heldout_text(None, a.data_dir, Path(tmp))
        streams = load_streams(tok, resolve_data_dir(a.data_dir) / "wikitext2", heldout, EvalSettings(a.window, a.max_windows, 4), info.max_position_embeddings)
    with torch.no_grad(), ChannelStatsRecorder(em) as rec:
        for b in calib.split(8):
            em(b)
    sha = weights_sha256(a.model)
    dense = {n: r["ppl"] for n, r in _ppl(em, streams).items()}
    print(f"dense: {dense}", flush=True)
    curves: dict[str, list[dict[str, Any]]] = {}
    for unit in ATTN_UNITS:
        ladder = default_attn_ladder(info, unit)
        sel = select_widths(em, rec.stats, (1.0,), attn_widths=ladder, attn_unit=unit, bias_modules=("attn",))
        from core.spec import ShapeSpace

        st = Strategy(info, sha, ShapeSpace(info.num_layers, info.num_layers, (1.0,), ladder), 1, "uniform",
                      {info.num_layers: tuple(range(info.num_layers))}, sel.attn, sel.ffn, sel.biases, {"bench": "attn_unit"}, attn_unit=unit)
        em.strategy = st
        points = [{"width": 1.0, "q_heads": info.num_heads, "kv_heads": info.num_kv_heads,
                   "attn_params_per_layer": _attn_params(info, info.num_heads, info.num_kv_heads), "ppl": dense}]
        for w in ladder[1:]:
            em.set_shape(SubnetSpec(info.num_layers, w, 1.0))
            q, kv = kept_heads(info, w, unit)
            ppl = {n: r["ppl"] for n, r in _ppl(em, streams).items()}
            points.append({"width": w, "q_heads": q, "kv_heads": kv, "attn_params_per_layer": _attn_params(info, q, kv), "ppl": ppl})
            print(f"{unit:9s} a{format_width(w)}: {q} q heads / {kv} kv heads, {points[-1]['attn_params_per_layer']:,} params/layer, ppl {ppl}", flush=True)
        em.set_shape(SubnetSpec(info.num_layers))
        em.strategy = None
        curves[unit] = points
    comparison = []
    for unit, other in (("kv_group", "q_head"), ("q_head", "kv_group")):
        for p in curves[unit][1:]:
            row: dict[str, Any] = {"at": f"{unit} a{format_width(p['width'])}", "attn_params_per_layer": p["attn_params_per_layer"]}
            for name in streams:
                xs = [float(q["attn_params_per_layer"]) for q in curves[other]]
                ys = [math.log(q["ppl"][name]) for q in curves[other]]
                y = interpolate(float(p["attn_params_per_layer"]), xs, ys)
                row[name] = {unit: p["ppl"][name], other: None if y is None else round(math.exp(y), 3)}
            comparison.append(row)
    wins = {u: 0 for u in ATTN_UNITS}
    for row in comparison:
        for name in streams:
            pair = row[name]
            if None not in pair.values():
                wins[min(pair, key=lambda k: pair[k])] += 1
    result = {
        "command": "python bench/attn_unit.py " + " ".join(sys.argv[1:]),
        "model": str(a.model), "model_dims": info.to_dict(), "calib_text": str(a.calib_text), "calib_tokens": int(calib.numel()),
        "eval": {n: s.describe() for n, s in streams.items()}, "curves": curves, "equal_params": comparison, "wins": wins,
        "wall_s": round(time.perf_counter() - t0, 1), "threads": a.threads, "load_avg_before": load0, "load_avg_after": load_avg(),
    }
    out = a.out or ROOT / "bench" / "results" / f"attn_unit_{a.model.name}.json"
    save_json(out, result)
    print(f"wins at equal parameters: {wins}; saved {out}")


def _attn_params(info: Any, q: int, kv: int) -> int:
    return layer_params(info, kv, 0, q_heads=q, attn_bias=q < info.num_heads) - 2 * info.hidden_size


def _ppl(em: ElasticModel, streams: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from bench.common_eval import eval_shape

    with torch.no_grad():
        return eval_shape(em, streams, 4)


if __name__ == "__main__":
    main()
