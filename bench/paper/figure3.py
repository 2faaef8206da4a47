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
    ap.add_argument("--amoeba-shapes", choices=("diagonal", "all"), default="diagonal", help="AmoebaLLM shapes to place")
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
    return args


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
    bench = c.LatencyBench(args.model, args.workload, repetitions=args.reps, warmup=args.warmup, threads=args.threads)
    kind, amoeba_bias_modules = ck.kind, ck.strategy.bias_modules
    settings = {"model_sha256": sha, "checkpoint_sha256": ck.checkpoint_sha256, "amoeba_shapes": args.amoeba_shapes, "depths": depths,
                "width_ladder": list(c.widths_arg(args.width_ladder)),
                "calibration": {"file": str(calib_path), "window": args.calib_window, "windows": args.calib_windows},
                "eval": suite.describe(), "latency": bench.settings(), "seed": args.seed}
    header = {"what": "Figure 3 analogue: quality vs measured latency; baselines pruned without fine-tuning, AmoebaLLM one-for-all",
              "model": str(args.model), "model_sha256": sha, "checkpoint": str(args.checkpoint), "checkpoint_kind": kind, "settings": settings,
              "calibration": settings["calibration"], "eval": settings["eval"], "latency": settings["latency"], "latency_axis": args.latency,
              "seed": args.seed}
    rows = c.ResumableRows(args.out, header, args.fresh, field="points")
    bench.rows.update({r["latency"]["arch"]: r["latency"] for r in rows.rows.values()})  # measured before a resume

    amoeba_label = "AmoebaLLM" if kind == "amoeba" else "AmoebaLLM (Stage 1 only: no Stage 2 checkpoint)"
    for spec in ck.strategy.space:
        if (args.amoeba_shapes == "diagonal" and spec.attn_width != spec.ffn_width) or rows.have(f"amoeba|{spec.key}"):
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
    cache = {r["fingerprint"]: quality_of(r) for r in rows.rows.values() if "fingerprint" in r}  # same subnet, same numbers
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


def finetuned_points(path: Path, bench: c.LatencyBench, info: Any, sha: str, amoeba_bias_modules: Sequence[str]) -> list[dict[str, Any]]:
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
    """Two panels: WikiText-2 perplexity (log) and mean acc_norm against latency; one colour per method."""
    plt = c.pyplot()
    key = LATENCY_KEYS[doc["latency_axis"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = list(dict.fromkeys(p["label"] for p in doc["points"]))
    methods = list(dict.fromkeys(p["method"] for p in doc["points"]))
    colours = plt.get_cmap("tab10")
    for label in labels:
        pts = sorted((p for p in doc["points"] if p["label"] == label), key=lambda p: p["latency"][key])
        xs = [p["latency"][key] for p in pts]
        tuned = bool(pts[0].get("finetuned"))
        colour = colours(methods.index(pts[0]["method"]) % 10)
        style = {"marker": "*" if tuned else "o", "ls": "none" if tuned else "-", "color": colour, "label": label, "ms": 10 if tuned else 4}
        axes[0].plot(xs, [p["wikitext2_ppl"] for p in pts], **style)
        if all(p["mc_mean_acc_norm"] is not None for p in pts):
            axes[1].plot(xs, [p["mc_mean_acc_norm"] for p in pts], **style)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("WikiText-2 perplexity")
    axes[1].set_ylabel("mean acc_norm (multiple choice)")
    for ax in axes:
        ax.set_xlabel(f"{key} ({doc['latency']['workload']}, torch CPU, {doc['latency']['threads']} thread)")
    axes[1].legend(fontsize=7)
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
    bench = c.LatencyBench(Path(doc["model"]), doc["latency"]["workload"], repetitions=args.reps, warmup=args.warmup, threads=args.threads)
    archs = sorted({p["latency"]["arch"] for p in doc["points"]})
    c.log(f"re-measuring {len(archs)} architectures in {args.remeasure} interleaved rounds")
    rows = bench.measure_interleaved(archs, args.remeasure)
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
