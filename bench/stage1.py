"""Stage 1 / export benchmark → ``bench/results/stage1.json``.

Measures, side by side in one run:
1. depth DP layer-forwards and wall time with vs without the prefix-activation cache (same answer required);
2. time to export a subnet vs ``save_pretrained`` of a model of the same size (random weights, same config);
3. decode latency per token (torch eager, CPU) of width-1 vs width-5/8 sliced subnets at equal depth.

Usage: python bench/stage1.py --model models/amoeba-tiny-base [--calib-text FILE] [--tokens 4096] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data.tokens import tokenize_file  # noqa: E402
from core.elastic.model import ElasticModel  # noqa: E402
from core.export.writer import export_subnet  # noqa: E402
from core.model.loader import load_base_model, weights_sha256  # noqa: E402
from core.spec import SubnetSpec, format_width  # noqa: E402
from core.strategy.calibrate import CalibrationConfig, calibrate  # noqa: E402


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def dp_bench(model_dir: Path, calib_text: Path, tokens: int, min_layers: int, window: int) -> tuple[dict[str, Any], Any]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    with tempfile.TemporaryDirectory() as tmp:
        ids = tokenize_file(calib_text, tok, cache_dir=Path(tmp))
    ids_t = torch.from_numpy(ids.astype("int64"))
    sha = weights_sha256(model_dir)
    out: dict[str, Any] = {}
    strategies = {}
    for use_cache in (True, False):
        hf, info = load_base_model(model_dir)
        cfg = CalibrationConfig(min_layers=min_layers, window=window, max_tokens=tokens, use_cache=use_cache)
        t0 = time.perf_counter()
        st = calibrate(hf, info, sha, ids_t, cfg)
        wall = time.perf_counter() - t0
        m = st.meta
        key = "with_cache" if use_cache else "without_cache"
        out[key] = {"wall_s": round(wall, 2), "layer_forwards_run": m["layer_forwards"]["cached"], "dp_evaluations": m["dp_evaluations"],
                    "stage_wall_s": m["wall_s"]}
        strategies[key] = st
    same = strategies["with_cache"].depth == strategies["without_cache"].depth
    out["same_answer"] = same
    out["layer_forward_ratio"] = round(out["without_cache"]["layer_forwards_run"] / out["with_cache"]["layer_forwards_run"], 3)
    out["wall_ratio"] = round(out["without_cache"]["wall_s"] / out["with_cache"]["wall_s"], 3)
    out["unit"] = "layer-forwards counted per sequence (layer x sequence)"
    out["calibration_tokens"] = tokens
    return out, strategies["with_cache"]


def export_bench(model_dir: Path, strategy: Any, shapes: list[str], reps: int) -> dict[str, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM

    hf, _ = load_base_model(model_dir)
    elastic = ElasticModel(hf, strategy)
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key in shapes:
            ex, sp = [], []
            for r in range(reps):
                d = Path(tmp) / f"{key}-{r}"
                t0 = time.perf_counter()
                export_subnet(elastic, SubnetSpec.parse(key), d, tokenizer_dir=model_dir)
                ex.append(time.perf_counter() - t0)
                cfg = AutoConfig.from_pretrained(str(d))
                twin = AutoModelForCausalLM.from_config(cfg)
                d2 = Path(tmp) / f"sp-{key}-{r}"
                t0 = time.perf_counter()
                twin.save_pretrained(str(d2))
                sp.append(time.perf_counter() - t0)
                size_mb = sum(f.stat().st_size for f in d.glob("*.safetensors")) / 2**20
                shutil.rmtree(d)
                shutil.rmtree(d2)
            res[key] = {"export_s_median": round(statistics.median(ex), 4), "save_pretrained_s_median": round(statistics.median(sp), 4),
                        "ratio_export_over_save_pretrained": round(statistics.median(ex) / statistics.median(sp), 3),
                        "weights_mb": round(size_mb, 2), "repetitions": reps}
    return res


def decode_bench(model_dir: Path, strategy: Any, pairs: list[tuple[str, str]], workload_key: str, reps: int) -> dict[str, Any]:
    from profilers.base import MeasureSettings
    from profilers.registry import get_profiler
    from profilers.source import ModelSource
    from profilers.workload import Workload

    hf, _ = load_base_model(model_dir)
    elastic = ElasticModel(hf, strategy)
    prof = get_profiler("torch", MeasureSettings(warmup=1, repetitions=reps, threads=1))
    wl = Workload.parse(workload_key)
    out: dict[str, Any] = {"workload": wl.key}
    measured: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for wide, narrow in pairs:
            for key in (wide, narrow):
                if key not in measured:  # a shape shared by several pairs is exported and measured once
                    d = Path(tmp) / key
                    export_subnet(elastic, SubnetSpec.parse(key), d, tokenizer_dir=model_dir)
                    measured[key] = prof.measure(ModelSource.open(d), SubnetSpec.parse(key), wl).model_dump(mode="json")
            rows = measured
            tw, tn = rows[wide]["tpot_ms"]["median"], rows[narrow]["tpot_ms"]["median"]
            out[f"{wide}_vs_{narrow}"] = {"tpot_ms_median": {wide: tw, narrow: tn}, "decode_speedup": round(tw / tn, 3),
                                           "ttft_ms_median": {wide: rows[wide]["ttft_ms"]["median"], narrow: rows[narrow]["ttft_ms"]["median"]},
                                           "busy": {wide: rows[wide].get("busy"), narrow: rows[narrow].get("busy")}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "amoeba-tiny-base")
    ap.add_argument("--calib-text", type=Path, default=None)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--min-layers", type=int, default=6)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workload", default="b1-p128-g64")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stage1.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    calib = a.calib_text or a.model / "calibration.txt"
    load_before = _load()
    t0 = time.perf_counter()
    dp, strategy = dp_bench(a.model, calib, a.tokens, a.min_layers, a.window)
    L, sp = strategy.model.num_layers, strategy.space
    # the smallest and a middle width of each ladder (5/8 and 3/4 on the default ladder; the model's own otherwise)
    a_lo, f_lo = format_width(sp.attn_ladder[-1]), format_width(sp.widths[-1])
    a_mid, f_mid = format_width(sp.attn_ladder[len(sp.attn_ladder) // 2]), format_width(sp.widths[len(sp.widths) // 2])
    exp = export_bench(a.model, strategy, [f"L{L}-a1-f1", f"L{L}-a{a_lo}-f{f_lo}", f"L{a.min_layers}-a{a_mid}-f{f_mid}"], a.reps)
    dec = decode_bench(a.model, strategy, [(f"L{L}-a1-f1", f"L{L}-a{a_lo}-f{f_lo}"), (f"L{L}-a1-f1", f"L{L}-a1-f{f_lo}"),
                                           (f"L{L}-a1-f1", f"L{L}-a{a_lo}-f1"), (f"L{a.min_layers}-a1-f1", f"L{a.min_layers}-a{a_lo}-f{f_lo}")],
                       a.workload, a.reps)
    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "model": str(a.model), "model_sha256": weights_sha256(a.model), "torch_threads": 1,
        "load_avg_before": load_before, "load_avg_after": _load(), "wall_s": round(time.perf_counter() - t0, 1),
        "depth_dp": dp, "export": exp, "decode": dec,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
