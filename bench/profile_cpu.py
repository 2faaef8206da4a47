"""CPU latency benchmark of the default base model's shapes on the torch and onnxruntime flows.

Writes ``bench/results/latency_cpu.json``: both profile tables (random weights from the base config), the
predictor's held-out error per engine, the decode speed-up of width 5/8 over width 1 at equal depth, how
latency scales with depth, the load average before / after, and the exact command line.

    python bench/profile_cpu.py                       # full run (refuses while `amoeba pretrain` runs)
    python bench/profile_cpu.py --quick --out /tmp/x.json --allow-busy   # development: 4 shapes, 2 repetitions
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.spec import SubnetSpec  # noqa: E402
from profilers.agent import run_profile  # noqa: E402
from profilers.base import MeasureSettings  # noqa: E402
from profilers.facts import load_avg  # noqa: E402
from profilers.predictor.model import LatencyPredictor  # noqa: E402
from profilers.registry import get_profiler  # noqa: E402
from profilers.source import ModelSource  # noqa: E402
from profilers.table import ProfileRow, ProfileTable, atomic_write_text  # noqa: E402
from profilers.workload import Workload  # noqa: E402

BASE_DIR = ROOT / "models" / "amoeba-tiny-base"
#: the default base model's config (what models/amoeba-tiny-base/config.json holds once pretraining finished)
DEFAULT_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 8192, "hidden_size": 256, "intermediate_size": 768,
    "num_hidden_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 16, "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2,
}
DEPTHS = (12, 10, 8, 6, 4, 2)
WIDTH_PAIRS = ((1.0, 1.0), (0.875, 0.875), (0.75, 0.75), (0.625, 0.625), (1.0, 0.625), (0.625, 1.0))


def pretraining_running() -> bool:
    return subprocess.run(["pgrep", "-f", "amoeba pretrain"], capture_output=True).returncode == 0


def base_dir(tmp: Path) -> tuple[Path, str]:
    """The real base config when present, else the equivalent config written to ``tmp`` (random weights either way)."""
    if (BASE_DIR / "config.json").is_file():
        cfg = json.loads((BASE_DIR / "config.json").read_text())
        origin = str(BASE_DIR.relative_to(ROOT) / "config.json")
    else:
        cfg, origin = DEFAULT_CONFIG, "bench/profile_cpu.py DEFAULT_CONFIG (models/amoeba-tiny-base absent)"
    d = tmp / "base"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    return d, origin


def shapes(quick: bool) -> list[SubnetSpec]:
    if quick:
        return [SubnetSpec(12), SubnetSpec(12, 0.625, 0.625), SubnetSpec(6), SubnetSpec(6, 0.625, 0.625)]
    return [SubnetSpec(n, a, f) for n in DEPTHS for a, f in WIDTH_PAIRS]


def depth_scaling(table: ProfileTable, metric: str) -> dict[str, Any]:
    """Least-squares line of full-width latency over depth, with R² (how affine latency is in layers)."""
    pts = sorted((r.num_layers, getattr(r, metric).median) for r in table.rows if r.shape.endswith("-a1-f1"))
    if len(pts) < 2:
        return {"points": pts}
    x, y = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
    slope, icpt = np.polyfit(x, y, 1)
    r2 = 1 - float(np.sum((y - (slope * x + icpt)) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-12))
    return {"ms_per_layer": round(float(slope), 4), "intercept_ms": round(float(icpt), 4), "r2": round(r2, 4),
            "points": {str(n): round(v, 4) for n, v in pts}}


def speedups(table: ProfileTable) -> dict[str, dict[str, float]]:
    """Per depth: width-1 latency / width-5/8 latency (attention and MLP both at 5/8)."""
    out: dict[str, dict[str, float]] = {}
    for n in sorted({r.num_layers for r in table.rows}):
        full, slim = table.row(SubnetSpec(n)), table.row(SubnetSpec(n, 0.625, 0.625))
        if full and slim:
            out[str(n)] = {"tpot": round(full.tpot_ms.median / slim.tpot_ms.median, 3), "ttft": round(full.ttft_ms.median / slim.ttft_ms.median, 3)}
    return out


def summary(table: ProfileTable) -> dict[str, Any]:
    res: dict[str, Any] = {"table_sha256": table.content_sha256(), "engine": table.engine.model_dump(), "rows": len(table.rows),
                           "busy_rows": sum(r.busy for r in table.rows), "speedup_w1_over_w0.625": speedups(table),
                           "depth_scaling": {"tpot_ms": depth_scaling(table, "tpot_ms"), "ttft_ms": depth_scaling(table, "ttft_ms")}}
    try:
        pred = LatencyPredictor.fit(table, include_busy=True)
        res["predictor"] = {k: {"chosen": t.method, **{m: s.model_dump() for m, s in t.cv.items()}} for k, t in pred.state.targets.items()}
    except Exception as e:  # too few shapes in --quick mode
        res["predictor"] = {"error": str(e)}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latency_cpu.json")
    ap.add_argument("--workload", default="b1-p128-g64")
    ap.add_argument("--engines", default="torch,onnxruntime,onnxruntime_genai", help="unavailable ones are recorded and skipped")
    ap.add_argument("--repetitions", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="4 shapes (development)")
    ap.add_argument("--allow-busy", action="store_true", help="run even while `amoeba pretrain` runs (numbers are then contended)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if pretraining_running() and not args.allow_busy:
        print("refusing: `amoeba pretrain` is running (its core would contend with the measurement); use --allow-busy for development")
        return 3
    env = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} " if os.environ.get("PYTHONPATH") else ""
    command = env + "python " + " ".join(shlex.quote(a) for a in sys.argv)
    wl = Workload.parse(args.workload)
    settings = MeasureSettings(warmup=args.warmup, repetitions=args.repetitions, threads=1, busy_retries=1)
    result: dict[str, Any] = {"command": command, "created_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
                              "pretraining_running_at_start": pretraining_running(), "load_avg_before": load_avg(),
                              "workload": wl.key, "settings": {"warmup": args.warmup, "repetitions": args.repetitions, "threads": 1},
                              "engines": {}, "tables": {}}
    with tempfile.TemporaryDirectory() as tmp:
        d, origin = base_dir(Path(tmp))
        result["base_config"] = origin
        src = ModelSource.open(d)
        specs = shapes(args.quick)
        result["shapes"] = [s.key for s in specs]
        for name in args.engines.split(","):
            prof = get_profiler(name, settings)
            reason = prof.unavailable_reason()
            if reason:
                result["engines"][name] = {"unavailable": reason}
                continue

            def show(i: int, r: ProfileRow, name: str = name) -> None:
                print(f"{name} {i + 1}/{len(specs)} {r.shape} ttft {r.ttft_ms.median:.2f} ms tpot {r.tpot_ms.median:.3f} ms"
                      + (" BUSY" if r.busy else ""), flush=True)

            table = run_profile(prof, src, specs, wl, device_name="bench-cpu", command=command, on_row=show)
            result["engines"][name] = summary(table)
            result["tables"][name] = table.model_dump(mode="json")
    result["load_avg_after"] = load_avg()
    result["pretraining_running_at_end"] = pretraining_running()
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result["engines"].items()}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
