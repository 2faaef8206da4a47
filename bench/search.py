"""Search benchmark: Optuna answers vs the exhaustive optimum, accuracy evaluations used, time per query.

For several latency budgets on one checkpoint and one measured latency table (CPU by default):
- ``exhaustive``: the exact answer (every feasible shape evaluated);
- ``optuna``: the constraint-aware TPE search with ``--trials`` trials (seeded);
each timed with a cold accuracy cache (nothing evaluated yet: the evaluations are part of the query) and a warm
one (the whole space filled first; the fill time is reported once). With ``--groups G`` also the per-layer-group
space (Optuna only; its answer is compared with the uniform exhaustive optimum). Writes ``bench/results/search.json``.

    python bench/search.py                                   # defaults below (needs the checkpoint and the CPU table)
    python bench/search.py --checkpoint DIR --table FILE --budgets 2.5,3.5 --out /tmp/search.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.atomic import write_json  # noqa: E402
from core.search.accuracy import AccuracyTable  # noqa: E402
from core.search.answer import answer_query  # noqa: E402
from core.search.cache import MemoryAccuracyCache  # noqa: E402
from core.search.metrics import MetricSettings  # noqa: E402
from core.search.optuna_search import OptunaConfig  # noqa: E402
from core.search.query import Answer, Budget  # noqa: E402
from core.search.session import AccuracySettings, open_accuracy  # noqa: E402
from core.search.shapes import GroupedSpace, LatencyView, SearchSpace, UniformSpace  # noqa: E402

DEFAULT_CHECKPOINTS = (ROOT / "models" / "amoeba-tiny-smol", ROOT / "models" / "amoeba-tiny-base")
DEFAULT_TABLE = ROOT / "bench" / "results" / "latency_cpu.json"


def load_profile(path: Path, engine: str) -> Any:
    """A profile table file, or the ``engine`` table inside ``bench/results/latency_cpu.json`` (``{"tables": {...}}``)."""
    import json

    from profilers.table import load_table, parse_table

    doc = json.loads(path.read_text())
    if isinstance(doc, dict) and "tables" in doc:
        if engine not in doc["tables"]:
            raise SystemExit(f"{path} has no {engine!r} table (has: {', '.join(doc['tables'])})")
        return parse_table(doc["tables"][engine])
    return load_table(path)


def auto_budgets(space: SearchSpace, view: LatencyView, metric: str) -> list[float]:
    """One infeasible budget (below the fastest shape) and five spread over the in-range latency span."""
    lats = sorted(e.value(metric, view.gen_len) for s in space.base if (e := view.estimate(s)).in_range)  # type: ignore[arg-type]
    lo, hi = lats[0], lats[-1]
    return [round(0.9 * lo, 4)] + [round(lo + q * (hi - lo), 4) for q in (0.1, 0.3, 0.5, 0.7, 0.9)]


def summary(ans: Answer) -> dict[str, Any]:
    if ans.kind == "infeasible":
        return {"kind": "infeasible", "reason": ans.reason, "fastest_latency_ms": ans.fastest_latency_ms}
    b = ans.best
    return {"kind": "found", "shape": b.shape, "accuracy": b.accuracy, "latency_ms": b.latency_ms, "trials": ans.trials}


def timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=next((p for p in DEFAULT_CHECKPOINTS if p.is_dir()), DEFAULT_CHECKPOINTS[0]))
    ap.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="profile table JSON, or bench/results/latency_cpu.json")
    ap.add_argument("--engine", default="torch", help="engine table to take from latency_cpu.json")
    ap.add_argument("--budgets", default="auto", help="'auto' or comma-separated budgets in ms")
    ap.add_argument("--metric", default="tpot", choices=("tpot", "ttft", "e2e"))
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--groups", type=int, default=2, help="also search the per-layer-group space with G groups (0: skip)")
    ap.add_argument("--calib-text", type=Path, default=None)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--max-windows", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "search.json")
    args = ap.parse_args(argv)

    import optuna
    import torch

    from profilers.predictor.model import LatencyPredictor

    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    load_start = os.getloadavg()
    table = load_profile(args.table, args.engine)
    predictor = LatencyPredictor.fit(table)
    view = LatencyView(predictor)
    ms = MetricSettings(window=args.window, max_windows=args.max_windows, calib_text=args.calib_text)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, warm = open_accuracy(AccuracySettings(args.checkpoint, "ppl", Path(tmp) / "warm.json", ms))

        def cold() -> AccuracyTable:
            return AccuracyTable(warm.logits_fn, warm.activate, warm.checkpoint_sha256, warm.metric, MemoryAccuracyCache())

        space = UniformSpace(ckpt.strategy.space)
        budgets = auto_budgets(space, view, args.metric) if args.budgets == "auto" else [float(x) for x in args.budgets.split(",")]
        cfg = OptunaConfig(n_trials=args.trials, seed=args.seed)
        _, fill_s = timed(lambda: [warm.accuracy(s) for s in space if view.estimate(s).in_range])
        fill = {"evaluations": warm.evaluations, "time_s": round(fill_s, 3), "per_shape_s": round(fill_s / max(1, warm.evaluations), 4)}
        queries = []
        for b in budgets:
            budget = Budget(b, args.metric)  # type: ignore[arg-type]
            q: dict[str, Any] = {"budget_ms": b, "metric": args.metric}
            for method in ("exhaustive", "optuna"):
                src = cold()
                ans_c, t_c = timed(lambda m=method, s=src, bu=budget: answer_query(space, view, s, bu, method=m, optuna=cfg))  # type: ignore[misc]
                ans_w, t_w = timed(lambda m=method, bu=budget: answer_query(space, view, warm, bu, method=m, optuna=cfg))  # type: ignore[misc]
                assert summary(ans_c) == summary(ans_w) or method == "optuna"
                q[method] = {**summary(ans_w), "evaluations_cold": src.evaluations,
                             "evaluations_warm": ans_w.evaluations if ans_w.kind == "found" else 0, "time_s": {"cold": round(t_c, 4), "warm": round(t_w, 4)}}
            ex, op = q["exhaustive"], q["optuna"]
            q["optuna_matches_exhaustive"] = ex.get("shape") == op.get("shape")
            if ex["kind"] == "found" and op["kind"] == "found":
                q["optuna_accuracy_gap"] = round(ex["accuracy"] - op["accuracy"], 6)
            if args.groups >= 2 and ex["kind"] == "found":
                gspace = GroupedSpace(ckpt.strategy.space, args.groups)
                before = warm.evaluations
                ans_g, t_g = timed(lambda gs=gspace, bu=budget: answer_query(gs, view, warm, bu, method="optuna", optuna=cfg))  # type: ignore[misc]
                q[f"optuna_groups{args.groups}"] = {**summary(ans_g), "space_shapes": len(gspace), "evaluations": warm.evaluations - before,
                                                    "time_s": round(t_g, 4), "gain_over_uniform_optimum": round(ans_g.best.accuracy - ex["accuracy"], 6)
                                                    if ans_g.kind == "found" else None}
            queries.append(q)
            print(f"budget {b:g} ms: exhaustive {ex.get('shape')} | optuna {op.get('shape')} "
                  f"({op['evaluations_cold']} evals cold, {op['time_s']['cold']:.2f}s) match={q['optuna_matches_exhaustive']}", file=sys.stderr)
        result = {
            "what": "search answers: Optuna (TPE with constraints, budget parametrization, multi-start polish) vs exhaustive optimum",
            "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(["bench/search.py", *argv]),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "checkpoint": str(ckpt.path), "checkpoint_kind": ckpt.kind, "checkpoint_sha256": ckpt.checkpoint_sha256,
            "accuracy": {"metric": warm.metric.name, "higher_is_better": True, "definition": "-ln(ppl) on the calibration text",
                         "data_sha256": warm.metric.data_sha256, "window": args.window, "max_windows": args.max_windows},
            "latency": {"table": str(args.table), "engine": table.engine.name, "device": table.device.name, "workload": table.workload,
                        "table_sha256": table.content_sha256(),
                        "held_out": {t: predictor.held_out(t).model_dump() for t in predictor.state.targets}},
            "space": {"shapes": len(space), "min_layers": space.base.min_layers, "max_layers": space.base.max_layers, "widths": list(space.base.widths)},
            "optuna": {"trials": args.trials, "seed": args.seed},
            "threads": args.threads, "load_avg": {"start": load_start, "end": os.getloadavg()},
            "fill": fill, "queries": queries,
        }
    write_json(args.out, result)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
