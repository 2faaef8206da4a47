"""CPU latency benchmark per (model, engine): the shared protocol, the test–retest noise floor, the predictor's held-out
error, width / depth speed-ups and adaptive profiling against the full grid.

Every flow (``MODEL/ENGINE[:DTYPE]``) is one interleaved measurement (``profilers.protocol``: 2 passes × ``--rounds``
rounds, the process pinned to ``--cpu``), so every ratio in its summary is measured side by side in one run. Results
are merged into ``--out`` per flow as each finishes (the file is re-read before every write, so flows measured by other
invocations are kept; each flow keeps its own command, load and quiet flag). ``--resume`` skips the flows ``--out``
already holds a table of for the same workload, so an interrupted list of flows continues where it stopped (a flow is
one interleaved measurement: an interrupted flow is measured again from its start; ``--weights-cache`` keeps its
random weights). ``--dry-run`` prints each flow's shapes and estimated duration (one quick probe of its costliest shape).

    python bench/profile_cpu.py --flows tiny/torch,tiny/onnxruntime                  # refuses on a loaded machine
    python bench/profile_cpu.py --flows smollm2/llamacpp:q8_0 --cpu 1 --allow-busy    # pinned, load recorded
    python bench/profile_cpu.py --flows smollm2/torch,smollm2/onnxruntime --resume --weights-cache /tmp/amoeba-weights
    python bench/profile_cpu.py --flows tiny/torch --quick --out /tmp/x.json --allow-busy   # development

``smollm2`` needs ``models/smollm2-135m`` (``amoeba fetch-model smollm2-135m``); its grid, attention unit (whole KV groups)
and compensation biases (attention) are the ones the SmolLM2 checkpoint (``models/amoeba-smollm2-smol``) uses, the same
for every engine so the flows compare side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.spec import SubnetSpec  # noqa: E402
from profilers.adaptive import AdaptiveOptions, replay  # noqa: E402
from profilers.agent import dry_run, run_profile  # noqa: E402
from profilers.base import MeasureSettings  # noqa: E402
from profilers.facts import load_avg  # noqa: E402
from profilers.predictor.model import LatencyPredictor  # noqa: E402
from profilers.registry import get_profiler  # noqa: E402
from profilers.source import ModelSource  # noqa: E402
from profilers.table import ProfileTable, atomic_write_text, parse_table  # noqa: E402
from profilers.workload import Workload  # noqa: E402

QUIET_FLAG = Path("/work/runs/QUIET")
SCHEMA = "amoeba-latency-bench-2"
#: per model: directory, grid (depths × attention widths × MLP widths), measuring settings; attention unit kv_group for both
#: (SmolLM2: whole KV groups beat query heads at equal parameters, bench/results/attn_unit_smollm2-135m.json) and
#: attention-only compensation biases (Stage 1's default), given explicitly so a later strategy/ cannot change the grid
MODELS: dict[str, dict[str, Any]] = {
    "tiny": {"dir": ROOT / "models" / "amoeba-tiny-base", "depths": (12, 10, 8, 6, 4, 2), "attn": (1.0, 0.75, 0.625), "ffn": (1.0, 0.75, 0.625),
             "warmup": 1, "repetitions": 2, "rounds": 2},
    "smollm2": {"dir": ROOT / "models" / "smollm2-135m", "depths": (30, 22, 15, 8), "attn": (1.0, 2 / 3, 1 / 3), "ffn": (1.0, 0.75, 0.625),
                "warmup": 1, "repetitions": 2, "rounds": 1},
}


def grid(model: str, quick: bool) -> list[SubnetSpec]:
    m = MODELS[model]
    if quick:
        d = m["depths"]
        return [SubnetSpec(n, a, f) for n in (d[0], d[len(d) // 2]) for a in (m["attn"][0], m["attn"][-1]) for f in (1.0, m["ffn"][-1])]
    return [SubnetSpec(n, a, f) for n in m["depths"] for a in m["attn"] for f in m["ffn"]]


def ratio_table(table: ProfileTable, metric: str, a: SubnetSpec, b: SubnetSpec) -> float | None:
    ra, rb = table.row(a), table.row(b)
    if ra is None or rb is None:
        return None
    return round(getattr(ra, metric).median / getattr(rb, metric).median, 3)


def speedups(table: ProfileTable, model: str) -> dict[str, Any]:
    """Side-by-side ratios from this one table: width 1 over the narrowest attention × MLP 5/8 and over 5/8 × 5/8 (where
    on the grid) per depth, and full depth over half depth at width 1."""
    m = MODELS[model]
    slim_a = m["attn"][-1]
    out: dict[str, Any] = {"narrow": f"a{slim_a:.6g}-f0.625", "per_depth": {}}
    for n in sorted({r.num_layers for r in table.rows}):
        full = SubnetSpec(n)
        entry = {f"{q}_w1_over_narrow": ratio_table(table, f"{q}_ms", full, SubnetSpec(n, slim_a, 0.625)) for q in ("tpot", "ttft")}
        if 0.625 in m["attn"]:
            entry |= {f"{q}_w1_over_w0.625": ratio_table(table, f"{q}_ms", full, SubnetSpec(n, 0.625, 0.625)) for q in ("tpot", "ttft")}
        out["per_depth"][str(n)] = entry
    top = max(m["depths"])
    half = [d for d in m["depths"] if d * 2 == top] or [min(m["depths"], key=lambda d: abs(2 * d - top))]
    out["half_depth"] = {"full": top, "half": half[0],
                         **{f"{q}_full_over_half": ratio_table(table, f"{q}_ms", SubnetSpec(top), SubnetSpec(half[0])) for q in ("tpot", "ttft")}}
    return out


def predictor_summary(table: ProfileTable) -> dict[str, Any]:
    pred = LatencyPredictor.fit(table, include_busy=True)
    out: dict[str, Any] = {"state_table_sha256": pred.state.table_sha256}
    for k, t in pred.state.targets.items():
        out[k] = {"chosen": t.method, **{m: s.model_dump() for m, s in t.cv.items()}}
    out["fit"] = pred.state.model_dump(mode="json")
    return out


def adaptive_benchmark(table: ProfileTable, full_cv: dict[str, Any]) -> dict[str, Any]:
    """Adaptive profiling replayed on this grid (each shape costs its recorded measure_s): to the 5 % / 95 % bar and to
    the full grid's own held-out error; the error of the adaptive fit on the shapes it never measured."""
    rows = [r for r in table.rows]
    total_s = sum(r.measure_s or 0.0 for r in rows)
    out: dict[str, Any] = {"full_grid": {"shapes": len(rows), "measure_s": round(total_s, 1),
                                         "cv_mape_pct": {k: full_cv[k][full_cv[k]["chosen"]]["mape_pct"] for k in ("ttft_ms", "tpot_ms")},
                                         "cv_within_10pct": {k: full_cv[k][full_cv[k]["chosen"]]["within_10pct"] for k in ("ttft_ms", "tpot_ms")}}}
    same = max(full_cv[k][full_cv[k]["chosen"]]["mape_pct"] for k in ("ttft_ms", "tpot_ms"))
    within = min(full_cv[k][full_cv[k]["chosen"]]["within_10pct"] for k in ("ttft_ms", "tpot_ms"))
    for name, mape, w10 in (("bar_5pct_95pct", 5.0, 0.95), ("same_as_full_grid", round(same, 3), round(within, 4))):
        res = replay(rows, table.model, table.wl, AdaptiveOptions(budget_s=total_s, target_mape_pct=mape, target_within_10pct=w10))
        got = {r.shape for r in res.rows}
        entry: dict[str, Any] = {"target": {"mape_pct": mape, "within_10pct": w10}, "stop": res.stop_reason, "shapes": len(res.rows),
                                 "measure_s": res.steps[-1].elapsed_s, "cv_at_stop": res.steps[-1].cv,
                                 "steps": [{"shapes": s.shapes, "elapsed_s": s.elapsed_s, "cv": s.cv} for s in res.steps]}
        rest = [r for r in rows if r.shape not in got]
        if rest and len(res.rows) >= 6:
            sub = parse_table(table.model_copy(update={"rows": res.rows, "noise_floor": None}).model_dump(mode="json"))
            pred = LatencyPredictor.fit(sub, include_busy=True)
            for q in ("ttft_ms", "tpot_ms"):
                err = np.array([abs(getattr(pred.estimate(r.spec), q) - getattr(r, q).median) / getattr(r, q).median for r in rest])
                entry[f"unmeasured_{q}"] = {"n": len(rest), "mape_pct": round(float(err.mean() * 100), 3), "within_10pct": round(float((err <= 0.1).mean()), 4)}
        out[name] = entry
    return out


def flow_workload(flow: str, workload: str) -> Workload:
    """The workload of ``MODEL/ENGINE[:DTYPE]`` at ``workload`` (the flow's dtype replaces the key's)."""
    dtype = flow.partition("/")[2].partition(":")[2] or "fp32"
    wl = Workload.parse(workload)
    return Workload(wl.batch, wl.prompt_len, wl.gen_len, dtype)


def parse_flows(text: str) -> list[str]:
    """``MODEL/ENGINE[:DTYPE]`` flows, comma-separated; ``SystemExit`` naming an unknown model."""
    flows = [f.strip() for f in text.split(",") if f.strip()]
    for f in flows:
        if f.partition("/")[0] not in MODELS or not f.partition("/")[2]:
            raise SystemExit(f"bad flow {f!r}: expected MODEL/ENGINE[:DTYPE] with MODEL one of {', '.join(MODELS)}")
    return flows


def missing_models(flows: list[str]) -> list[str]:
    """Model directories the flows need that are not there (each with how to build it)."""
    out = []
    for model in dict.fromkeys(f.partition("/")[0] for f in flows):
        d = MODELS[model]["dir"]
        if not (d / "config.json").is_file():
            hint = " (build it: amoeba fetch-model smollm2-135m)" if model == "smollm2" else ""
            out.append(f"{d}{hint}")
    return out


def pending_flows(doc: dict[str, Any], flows: list[str], workload: str) -> list[str]:
    """The flows ``doc`` does not yet hold a measured table of at their workload (what ``--resume`` still runs)."""
    have = doc.get("flows", {}) if doc.get("schema") == SCHEMA else {}
    return [f for f in flows if not ("table" in have.get(f, {}) and have[f].get("workload") == flow_workload(f, workload).key)]


def merge_flow(out: Path, flow: str, result: dict[str, Any]) -> bool:
    """Write one flow's result into ``out`` (re-read now: flows written meanwhile are kept; another schema is replaced),
    the tiny model's tables also under ``tables.<engine>``; atomic. A result without a table (engine unavailable here)
    never replaces a measured flow: then nothing is written and ``False`` is returned."""
    doc: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    if doc.get("schema") != SCHEMA:
        doc = {"schema": SCHEMA, "flows": {}}
    #: the bundled model's tables by engine (``tables.torch`` …), as bench/search.py and bench/service.py read them
    doc.setdefault("tables", {})
    if "table" not in result and "table" in doc["flows"].get(flow, {}):
        return False
    doc["flows"][flow] = result
    if flow.startswith("tiny/") and "table" in result:
        doc["tables"][flow.removeprefix("tiny/")] = result["table"]
    atomic_write_text(out, json.dumps(doc, indent=1) + "\n")
    return True


def flow_setup(flow: str, args: argparse.Namespace) -> tuple[Any, ModelSource, list[SubnetSpec], Workload]:
    """The profiler (pinned, 2 passes), model source, grid and workload of one flow."""
    model, _, eng = flow.partition("/")
    engine = eng.partition(":")[0]
    wl = flow_workload(flow, args.workload)
    m = MODELS[model]
    cpus = tuple(int(c) for c in args.cpu.split(",")) if args.cpu else None
    rounds = 1 if args.quick else (args.rounds or m["rounds"])
    settings = MeasureSettings(warmup=m["warmup"], repetitions=m["repetitions"], rounds=rounds, passes=2, threads=1,
                               busy_retries=args.busy_retries, cpu_affinity=cpus)
    src = dataclasses.replace(ModelSource.open(m["dir"], attn_unit="kv_group", bias_modules=("attn",)), weights_cache=args.weights_cache)
    return get_profiler(engine, settings), src, grid(model, args.quick), wl


def run_flow(flow: str, args: argparse.Namespace, command: str) -> dict[str, Any]:
    model = flow.partition("/")[0]
    m = MODELS[model]
    prof, src, specs, wl = flow_setup(flow, args)
    reason = prof.unavailable_reason()
    if reason:
        return {"unavailable": reason}
    quiet, load0 = QUIET_FLAG.exists(), load_avg()
    t0 = time.perf_counter()

    def progress(done: int, total: int, key: str) -> None:
        if done % max(1, total // 20) == 0 or done == total:
            print(f"{flow}: {done}/{total} ({key}) {time.perf_counter() - t0:.0f}s load {load_avg()[0]}", flush=True)

    table = run_profile(prof, src, specs, wl, device_name="bench-cpu", command=command, on_progress=progress)
    res: dict[str, Any] = {"command": command, "quiet_flag_at_start": quiet, "quiet_flag_at_end": QUIET_FLAG.exists(), "load_avg_before": load0,
                           "load_avg_after": load_avg(), "wall_s": round(time.perf_counter() - t0, 1), "model_dir": str(m["dir"].relative_to(ROOT)),
                           "attn_unit": src.attn_unit, "bias_modules": list(src.bias_modules), "workload": wl.key, "shapes": len(specs),
                           "busy_rows": sum(r.busy for r in table.rows), "remeasured_rounds": table.protocol.remeasured_rounds if table.protocol else 0,
                           "max_contention": max((r.contention or 0.0) for r in table.rows),
                           "noise_floor": table.noise_floor.model_dump() if table.noise_floor else None,
                           "table_sha256": table.content_sha256(), "engine": table.engine.model_dump(),
                           "protocol": table.protocol.model_dump() if table.protocol else None}
    try:
        res["predictor"] = predictor_summary(table)
    except Exception as e:  # too few shapes
        res["predictor"] = {"error": f"{type(e).__name__}: {e}"}
    try:
        res["adaptive"] = adaptive_benchmark(table, res["predictor"])
    except Exception as e:  # too few shapes (--quick)
        res["adaptive"] = {"error": f"{type(e).__name__}: {e}"}
    res["speedups"] = speedups(table, model)
    res["table"] = table.model_dump(mode="json")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latency_cpu.json")
    ap.add_argument("--flows", default="tiny/torch,tiny/onnxruntime", help="MODEL/ENGINE[:DTYPE], comma-separated (models: tiny, smollm2)")
    ap.add_argument("--workload", default="b1-p128-g64")
    ap.add_argument("--cpu", default=None, help="CPUs to pin to (default: the last allowed CPU)")
    ap.add_argument("--quick", action="store_true", help="8 shapes, 1 round per pass (development)")
    ap.add_argument("--allow-busy", action="store_true", help="run even when the machine is loaded (the load is recorded)")
    ap.add_argument("--max-load", type=float, default=0.5)
    ap.add_argument("--busy-retries", type=int, default=2, help="re-measurements of a contended round before it is marked busy")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per pass (default: the model's, tiny 2, smollm2 1)")
    ap.add_argument("--weights-cache", type=Path, default=None, help="keep the random weights per shape here (default: a temporary directory)")
    ap.add_argument("--prebuild", action="store_true", help="only build the random weights of every flow's shapes into --weights-cache")
    ap.add_argument("--resume", action="store_true", help="skip the flows --out already holds a table of at this workload")
    ap.add_argument("--dry-run", action="store_true",
                    help="print each flow's shapes and estimated duration (one quick probe; an upper bound), measure nothing")
    args = ap.parse_args()
    flows = parse_flows(args.flows)
    if missing := missing_models(flows):
        print("model directory missing: " + "; ".join(missing))
        return 2
    if args.prebuild:
        import torch

        for flow in flows:
            model = flow.partition("/")[0]
            src = dataclasses.replace(ModelSource.open(MODELS[model]["dir"], attn_unit="kv_group", bias_modules=("attn",)), weights_cache=args.weights_cache)
            for s in grid(model, args.quick):
                src.build_torch(s, torch.float32)
        print(f"built random weights into {args.weights_cache}")
        return 0
    if args.resume:
        doc = json.loads(args.out.read_text()) if args.out.is_file() else {}
        todo = pending_flows(doc, flows, args.workload)
        print(f"resume: {len(flows) - len(todo)} of {len(flows)} flows already in {args.out}" + (f"; measuring {', '.join(todo)}" if todo else ""))
        flows = todo
    if args.dry_run:
        return print_dry_runs(flows, args)
    if load_avg()[0] > args.max_load and not args.allow_busy:
        print(f"refusing: 1-min load {load_avg()[0]} > {args.max_load} (quiet flag {QUIET_FLAG} {'present' if QUIET_FLAG.exists() else 'absent'}); "
              "use --allow-busy to measure anyway (the load is recorded)")
        return 3
    env = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} " if os.environ.get("PYTHONPATH") else ""
    command = env + "python " + " ".join(shlex.quote(a) for a in sys.argv)
    cache = tempfile.TemporaryDirectory(prefix="amoeba-bench-weights-")  # random weights built once per shape for every flow
    args.weights_cache = args.weights_cache or Path(cache.name)
    for flow in flows:
        print(f"== {flow}", flush=True)
        f = run_flow(flow, args, command) | {"created_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}
        if not merge_flow(args.out, flow, f):
            print(f"{flow}: {f.get('unavailable', 'not measured')}; kept the measured flow already in {args.out}", flush=True)
        if "noise_floor" in f and f["noise_floor"]:
            p = f.get("predictor", {})
            print(json.dumps({"flow": flow, "floor": {q: f["noise_floor"][q]["median_abs_delta_pct"] for q in ("ttft_ms", "tpot_ms")},
                              "heldout": {q: {k: p[q][p[q]["chosen"]][k] for k in ("mape_pct", "within_10pct")} for q in ("ttft_ms", "tpot_ms") if q in p},
                              "speedups": f["speedups"]["half_depth"]}, indent=None), flush=True)
    cache.cleanup()
    print(f"wrote {args.out}")
    return 0


def print_dry_runs(flows: list[str], args: argparse.Namespace) -> int:
    """Per flow: shapes, the probe and the estimated measuring time (``profilers.agent.dry_run``); busy re-measurements,
    the weights build and the summaries are not included."""
    total = 0.0
    for flow in flows:
        prof, src, specs, wl = flow_setup(flow, args)
        if reason := prof.unavailable_reason():
            print(f"{flow}: unavailable: {reason}")
            continue
        d = dry_run(prof, src, specs, wl)
        total += d.estimated_seconds
        print(f"{flow}: {len(specs)} shapes at {wl.key}, probe {d.probe_shape.key} {d.probe_seconds:.1f} s, estimated {d.estimated_seconds / 60:.1f} min",
              flush=True)
    print(f"estimated total: {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
