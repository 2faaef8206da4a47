"""Figure 3 analogue: quality vs measured latency (torch flow, CPU) → ``bench/results/paper_figure3.json`` + ``.png``.

Points per method:
- ``AmoebaLLM``: the one-for-all checkpoint at every shape of its space with ``attn_width == ffn_width``
  (``--amoeba-shapes all``: every shape), no per-shape training;
- every baseline (``--methods``): every shape of its strategy (depth methods: each depth of ``--depths``;
  width methods: each width of ``--width-ladder``), pruned, no fine-tuning;
- with ``--table1 FILE``: the fine-tuned points of Table 1 (AmoebaLLM† and baselines + LoRA), marked separately.
Latency: the ``torch`` profiler on the shape's exact architecture (random weights; compensation biases when the
method has them), one measurement per distinct architecture, ``--workload`` (default b1-p128-g64). The plot has
WikiText-2 perplexity and mean multiple-choice acc_norm against ``--latency`` (tpot, ttft or e2e).

    python bench/paper/figure3.py                              # needs models/amoeba-tiny-smol
    python bench/paper/figure3.py --table1 bench/results/paper_table1.json --limit 100
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

try:
    from bench.paper import common as c
except ModuleNotFoundError:  # run as a file: python bench/paper/figure3.py
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench.paper import common as c

DEFAULT_METHODS = "ppl-block,taylor-block,angular,flap,llm-pruner,magnitude"
LATENCY_KEYS = {"tpot": "tpot_ms", "ttft": "ttft_ms", "e2e": "e2e_ms"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    c.add_common_args(ap)
    ap.add_argument("--checkpoint", type=Path, default=c.DEFAULT_CHECKPOINT, help="AmoebaLLM checkpoint (or a base dir with strategy/)")
    ap.add_argument("--methods", default=DEFAULT_METHODS, help="baselines (core.baselines)")
    ap.add_argument("--amoeba-shapes", default="diagonal",
                    help="AmoebaLLM shapes to place: diagonal (attn width = ffn width), all, or pareto:N (N shapes spread along the "
                         "calibration-perplexity / decoder-parameter front of the whole space)")
    ap.add_argument("--engines", default="torch", help="CPU flows to measure, comma-separated (profilers.registry); the first is the main axis")
    ap.add_argument("--reuse-evals", default="", help="rows files (Table 3, DP variants) whose evaluations of identical subnets are reused")
    ap.add_argument("--depths", default=None, help="depths of the depth baselines (default: L down to L/2)")
    ap.add_argument("--width-ladder", default=c.FINE_WIDTHS, help="width ladder of the width baselines")
    ap.add_argument("--workload", default="b1-p128-g64", help="latency workload b{batch}-p{prompt}-g{generated}")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per architecture")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up runs per architecture")
    ap.add_argument("--latency", choices=tuple(LATENCY_KEYS), default="tpot", help="x axis of the plot")
    ap.add_argument("--table1", type=Path, default=None, help="overlay the fine-tuned points of this paper_table1.json")
    ap.add_argument("--fresh", action="store_true", help="ignore finished points in --out")
    ap.add_argument("--remeasure", type=int, default=None, metavar="ROUNDS",
                    help="evaluate nothing: re-measure the latency of every architecture in --out side by side in ROUNDS "
                         "interleaved rounds (--reps each), replace it in the points and redraw (run on a quiet machine)")
    ap.add_argument("--out", type=Path, default=c.RESULTS / "paper_figure3.json")
    args = ap.parse_args(argv)
    c.apply_tiny(args, workload="b1-p8-g4", reps=1, warmup=0, width_ladder="1,3/4,1/2")
    amoeba_shapes(args.amoeba_shapes)
    return args


def amoeba_shapes(text: str) -> tuple[str, int]:
    """``diagonal`` / ``all`` / ``pareto:N`` → (mode, N)."""
    from core.errors import ConfigError

    mode, _, n = text.partition(":")
    if mode in ("diagonal", "all") and not n:
        return mode, 0
    if mode == "pareto" and n.isdigit() and int(n) >= 2:
        return mode, int(n)
    raise ConfigError(f"--amoeba-shapes {text!r}: expected diagonal, all or pareto:N with N >= 2")


def pareto_pick(scored: dict[str, tuple[float, float]], n: int) -> list[str]:
    """``n`` shapes spread evenly (by decoder fraction) along the front of ``scored`` = shape → (fraction, ppl):
    a shape is on the front when no other has a smaller-or-equal fraction and a lower perplexity."""
    front = sorted((k for k, (f, p) in scored.items() if not any(f2 <= f and p2 < p for k2, (f2, p2) in scored.items() if k2 != k)),
                   key=lambda k: scored[k][0])
    if len(front) <= n:
        return front
    lo, hi = scored[front[0]][0], scored[front[-1]][0]
    picks: list[str] = []
    for t in (lo + (hi - lo) * i / (n - 1) for i in range(n)):
        best = min((k for k in front if k not in picks), key=lambda k: abs(scored[k][0] - t))
        picks.append(best)
    return sorted(picks, key=lambda k: scored[k][0])


class Benches:
    """One ``LatencyBench`` per CPU flow; ``measure`` returns the first flow's row with every flow's under ``by_engine``."""

    def __init__(self, model_dir: Path, workload: str, engines: Sequence[str], reps: int, warmup: int, threads: int) -> None:
        from core.errors import ConfigError

        if not engines:
            raise ConfigError("--engines: name at least one CPU flow (e.g. torch,onnxruntime)")
        self.benches = {e: c.LatencyBench(model_dir, workload, repetitions=reps, warmup=warmup, threads=threads, engine=e) for e in engines}
        self.first = next(iter(self.benches.values()))

    def settings(self) -> dict[str, Any]:
        return {**self.first.settings(), "engines": list(self.benches), "by_engine": {e: b.settings() for e, b in self.benches.items()}}

    def restore(self, points: Any) -> None:
        """Reuse the latencies of finished points (a resumed run measures nothing twice)."""
        for p in points:
            lat = p["latency"]
            for e, row in lat.get("by_engine", {self.first.engine: lat}).items():
                if e in self.benches:
                    self.benches[e].rows[row["arch"]] = {k: v for k, v in row.items() if k != "by_engine"}

    def measure(self, spec: Any, bias_modules: Sequence[str]) -> dict[str, Any]:
        by = {e: b.measure(spec, bias_modules) for e, b in self.benches.items()}
        return {**by[self.first.engine], "by_engine": by}

    def interleaved(self, archs: Sequence[str], rounds: int) -> dict[str, dict[str, Any]]:
        """Every architecture re-measured on every flow (``LatencyBench.measure_interleaved``, one flow after the other)."""
        by = {e: b.measure_interleaved(archs, rounds) for e, b in self.benches.items()}
        return {a: {**by[self.first.engine][a], "by_engine": {e: rows[a] for e, rows in by.items()}} for a in archs}


def quality(ev: dict[str, Any]) -> dict[str, Any]:
    """The numbers a point plots, from an ``EvalSuite.evaluate`` result."""
    return {"wikitext2_ppl": ev["wikitext2"]["ppl"], "book_ppl": ev["book"]["ppl"], "mc_mean_acc_norm": ev.get("mc_mean_acc_norm")}


def quality_of(p: dict[str, Any]) -> dict[str, Any]:
    """The plotted numbers of a stored point."""
    return {k: p[k] for k in ("wikitext2_ppl", "book_ppl", "mc_mean_acc_norm")}


def point(method: str, label: str, spec: Any, fraction: float, q: dict[str, Any], lat: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"method": method, "label": label, "shape": spec.key, "fraction": fraction, **q, "latency": lat, **extra}


def run(args: argparse.Namespace, record: c.RunRecord) -> dict[str, Any]:
    from core.baselines import BaselineConfig, build_baseline_strategy
    from core.baselines.params import remaining_fraction
    from core.elastic.model import ElasticModel
    from core.errors import ConfigError

    methods = c.methods_arg(args.methods)
    m = c.open_models(args, checkpoint=True)
    hf, info, sha, tokenizer, ck = m.hf, m.info, m.sha256, m.tokenizer, m.checkpoint
    m.checkpoint = None
    L = info.num_layers
    depths = sorted({int(d) for d in c.names_arg(args.depths)} if args.depths else set(range(L, (L + 1) // 2 - 1, -1)), reverse=True)
    if any(not 1 <= d <= L for d in depths):
        raise ConfigError(f"--depths {depths} outside [1, {L}]")
    calib, calib_path = c.calib_ids(args, tokenizer, args.checkpoint, args.model)
    suite = c.EvalSuite.load(args, tokenizer, info.max_position_embeddings)
    bench = Benches(args.model, args.workload, c.names_arg(args.engines), args.reps, args.warmup, args.threads)
    kind, amoeba_bias_modules = ck.kind, ck.strategy.bias_modules
    mode, n_pareto = amoeba_shapes(args.amoeba_shapes)
    settings = {**c.eval_settings(args, sha), "checkpoint_sha256": ck.checkpoint_sha256, "amoeba_shapes": args.amoeba_shapes, "depths": depths,
                "width_ladder": list(c.widths_arg(args.width_ladder)),
                "calibration": {"file": str(calib_path), "window": args.calib_window, "windows": args.calib_windows},
                "eval": suite.describe(), "latency": bench.settings(), "seed": args.seed}
    header = {"what": "Figure 3 analogue: quality vs measured latency; baselines pruned without fine-tuning, AmoebaLLM one-for-all",
              "model": str(args.model), "model_sha256": sha, "checkpoint": str(args.checkpoint), "checkpoint_kind": kind, "settings": settings,
              "calibration": settings["calibration"], "eval": settings["eval"], "latency": settings["latency"], "latency_axis": args.latency,
              "seed": args.seed}
    rows = c.ResumableRows(args.out, header, args.fresh, field="points")
    bench.restore(rows.rows.values())  # measured before a resume

    amoeba_label = "AmoebaLLM" if kind == "amoeba" else "AmoebaLLM (Stage 1 only: no Stage 2 checkpoint)"
    chosen: set[str] | None = None
    if mode == "pareto":
        scored: dict[str, tuple[float, float]] = {}
        for spec in ck.strategy.space:  # calibration perplexity of every shape: the front's quality axis
            ck.elastic.set_shape(spec)
            scored[spec.key] = (remaining_fraction(info, spec, ck.strategy)[0],
                                c.calibration_ppl(ck.elastic, calib, args.calib_window, args.calib_windows, args.batch_size))
        chosen = set(pareto_pick(scored, n_pareto))
        header["amoeba_pareto"] = {"rule": f"{n_pareto} shapes spread by decoder fraction along the calibration-ppl front",
                                   "scored": {k: {"fraction": f, "calibration_ppl": q} for k, (f, q) in scored.items()}, "chosen": sorted(chosen)}
        c.log(f"amoeba: {len(chosen)} shapes on the calibration front: {sorted(chosen)}")
    for spec in ck.strategy.space:
        skip = spec.key not in chosen if chosen is not None else (mode == "diagonal" and spec.attn_width != spec.ffn_width)
        if skip or rows.have(f"amoeba|{spec.key}"):
            continue
        c.log(f"amoeba {spec.key}")
        ck.elastic.set_shape(spec)
        ev = suite.evaluate(ck.elastic)
        lat = bench.measure(spec, ck.strategy.bias_modules)
        rows.add(point("amoeba", amoeba_label, spec, remaining_fraction(info, spec, ck.strategy)[0], quality(ev), lat, key=f"amoeba|{spec.key}"))
    del ck

    dense = ElasticModel(hf)
    cfg = BaselineConfig(min_layers=min(depths), widths=c.widths_arg(args.width_ladder), window=args.calib_window,
                         num_windows=args.calib_windows, batch_size=args.batch_size)
    reused = c.reusable_evals([Path(x) for x in c.names_arg(args.reuse_evals)], c.eval_settings(args, sha))
    cache = {fp: quality(ev) for fp, ev in reused.items()}
    cache |= {r["fingerprint"]: quality_of(r) for r in rows.rows.values() if "fingerprint" in r}  # same subnet, same numbers
    for name in methods:
        if f"method:{name}" in rows.done:
            continue
        c.log(f"{name}: building the strategy, then evaluating its shapes")
        st = build_baseline_strategy(name, dense, info, sha, calib, cfg)
        sem = ElasticModel(hf, st).eval()
        for spec in st.space:
            key = f"{name}|{spec.key}"
            if spec.attn_width != spec.ffn_width or spec.num_layers not in depths or rows.have(key):
                continue
            sem.set_shape(spec)
            fp = c.subnet_fingerprint(st, spec)
            if fp not in cache:
                c.log(f"{name} {spec.key}")
                cache[fp] = quality(suite.evaluate(sem))
            lat = bench.measure(spec, st.bias_modules)
            rows.add(point(name, f"{name} (no FT)", spec, remaining_fraction(info, spec, st)[0], cache[fp], lat, fingerprint=fp, key=key))
        rows.mark_done(f"method:{name}")
    points = list(rows.rows.values())
    if args.table1 is not None:
        points += finetuned_points(args.table1, bench, info, sha, amoeba_bias_modules)
    return {**record.finish(), **header, "points": points, "done": rows.done,
            "architectures_measured": len({p["latency"]["arch"] for p in points})}


def finetuned_points(path: Path, bench: Benches, info: Any, sha: str, amoeba_bias_modules: Sequence[str]) -> list[dict[str, Any]]:
    """The per-shape LoRA rows of a Table 1 result (same base weights required), with measured latency. Rows written
    before Table 1 recorded ``bias_modules`` have only ``compensation_bias``: AmoebaLLM's modules are then the
    checkpoint strategy's, a baseline's both (FLAP, the one baseline with biases, compensates both)."""
    from core.errors import ConfigError, DataMissingError
    from core.spec import SubnetSpec

    if not Path(path).is_file():
        raise DataMissingError(f"Table 1 result not found: {path}")
    doc = json.loads(Path(path).read_text())
    if doc.get("settings", {}).get("model_sha256") != sha:
        raise ConfigError(f"{path} was computed on other base weights")
    out, seen = [], set()
    for r in doc.get("rows", []):
        if r.get("stage") != "per-shape-lora" or (r["label"], r["shape"]) in seen:
            continue
        seen.add((r["label"], r["shape"]))
        spec = SubnetSpec.parse(r["shape"])
        mods = r.get("bias_modules")
        if mods is None:
            mods = amoeba_bias_modules if r["method"] == "amoeba" else ("attn", "ffn") if r.get("compensation_bias") else ()
        lat = bench.measure(spec, mods)
        out.append(point(r["method"], r["label"], spec, r["fraction"], quality(r["eval"]), lat, finetuned=True, target=r["target"]))
    return out


def plot(doc: dict[str, Any], path: Path) -> Path:
    """Held-out-book perplexity (log) and mean acc_norm against latency, one row of two panels per CPU flow; one
    colour per method, fine-tuned points as stars."""
    plt = c.pyplot()
    key = LATENCY_KEYS[doc["latency_axis"]]
    engines = doc["latency"].get("engines", [doc["latency"]["engine"]])
    fig, grid = plt.subplots(len(engines), 2, figsize=(11, 4.2 * len(engines)), squeeze=False)
    labels = list(dict.fromkeys(p["label"] for p in doc["points"]))
    methods = list(dict.fromkeys(p["method"] for p in doc["points"]))
    colours = plt.get_cmap("tab10")

    def lat(p: dict[str, Any], engine: str) -> float:
        return float(p["latency"].get("by_engine", {engine: p["latency"]})[engine][key])

    for axes, engine in zip(grid, engines, strict=True):
        for label in labels:
            pts = sorted((p for p in doc["points"] if p["label"] == label), key=lambda p: lat(p, engine))
            xs = [lat(p, engine) for p in pts]
            tuned = bool(pts[0].get("finetuned"))
            colour = colours(methods.index(pts[0]["method"]) % 10)
            style = {"marker": "*" if tuned else "o", "ls": "none" if tuned else "-", "color": colour, "label": label, "ms": 10 if tuned else 4}
            axes[0].plot(xs, [p["book_ppl"] for p in pts], **style)
            if all(p["mc_mean_acc_norm"] is not None for p in pts):
                axes[1].plot(xs, [p["mc_mean_acc_norm"] for p in pts], **style)
        axes[0].set_yscale("log")
        axes[0].set_ylabel("held-out books perplexity")
        axes[1].set_ylabel("mean acc_norm (multiple choice)")
        for ax in axes:
            ax.set_xlabel(f"{key} ({doc['latency']['workload']}, {engine} CPU, {doc['latency']['threads']} thread)")
    grid[0][1].legend(fontsize=7)
    fig.suptitle("Quality vs measured latency")
    return c.save_png(fig, path)


def remeasure(args: argparse.Namespace, record: c.RunRecord) -> dict[str, Any]:
    """The finished ``--out`` with every point's latency re-measured side by side (``LatencyBench.measure_interleaved``)."""
    from core.errors import DataMissingError

    if not args.out.is_file():
        raise DataMissingError(f"--remeasure needs a finished Figure 3 result at {args.out}")
    doc = json.loads(args.out.read_text())
    if not doc.get("points") or "wall_s" not in doc:
        raise DataMissingError(f"{args.out} is not a finished Figure 3 result (run figure3.py to the end first)")
    bench = Benches(Path(doc["model"]), doc["latency"]["workload"], c.names_arg(args.engines), args.reps, args.warmup, args.threads)
    archs = sorted({p["latency"]["arch"] for p in doc["points"]})
    c.log(f"re-measuring {len(archs)} architectures on {args.engines} in {args.remeasure} interleaved rounds")
    rows = bench.interleaved(archs, args.remeasure)
    for p in doc["points"]:
        p["latency"] = rows[p["latency"]["arch"]]
    doc["latency"] = {**bench.settings(), "rounds": args.remeasure, "remeasured": record.finish(), "first_pass": doc["latency"]}
    return doc


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    c.require_matplotlib()
    torch.set_num_threads(args.threads)
    record = c.RunRecord.start("figure3.py", argv)
    doc = remeasure(args, record) if args.remeasure is not None else run(args, record)
    c.save_json(args.out, doc)
    doc["plot"] = str(plot(doc, args.out.with_suffix(".png")))
    c.save_json(args.out, doc)
    return doc


if __name__ == "__main__":
    c.run_script(main)
