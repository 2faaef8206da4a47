"""Table 3 analogue: depth-only layer selection before fine-tuning → ``bench/results/paper_table3.json`` (+ .png).

Methods (``core.baselines``): ``dp`` (AmoebaLLM's DP), ``angular`` (Unreasonable Ineffectiveness), ``ppl-block`` and
``taylor-block`` (Shortened LLaMA), ``drop-last``. All select on the same calibration windows; each depth is
scored on WikiText-2 test and on held-out books (perplexity, first ``--max-windows`` windows), plus the
calibration perplexity itself. No fine-tuning anywhere. Identical subnets are evaluated once.

    python bench/paper/table3.py                               # defaults: models/amoeba-tiny-base, depths L-1 .. L/2
    python bench/paper/table3.py --depths 10,8,6 --max-windows 0 --strategies-dir var/paper/strategies
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

try:
    from bench.paper import common as c
except ModuleNotFoundError:  # run as a file: python bench/paper/table3.py
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench.paper import common as c

DEFAULT_METHODS = "dp,angular,ppl-block,taylor-block,drop-last"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    c.add_common_args(ap)
    ap.add_argument("--depths", default=None, help="depths to report (default: L-1 down to L/2; at least 4)")
    ap.add_argument("--methods", default=DEFAULT_METHODS, help="depth methods (core.baselines)")
    ap.add_argument("--strategies-dir", type=Path, default=None, help="also save every method's strategy here")
    ap.add_argument("--no-plot", action="store_true", help="skip the PNG")
    ap.add_argument("--out", type=Path, default=c.RESULTS / "paper_table3.json")
    args = ap.parse_args(argv)
    args.tasks = ""  # Table 3 is perplexity only
    c.apply_tiny(args)
    return args


def default_depths(num_layers: int) -> list[int]:
    """``L−1`` down to ``⌈L/2⌉`` (at least one depth)."""
    return list(range(num_layers - 1, max(1, (num_layers + 1) // 2) - 1, -1)) or [num_layers]


def run(args: argparse.Namespace, record: c.RunRecord) -> dict[str, Any]:
    from core.baselines import BaselineConfig, build_baseline_strategy
    from core.elastic.model import ElasticModel
    from core.errors import ConfigError
    from core.spec import SubnetSpec

    methods = c.methods_arg(args.methods, "depth")
    m = c.open_models(args, checkpoint=False)
    hf, info, sha, tokenizer = m.hf, m.info, m.sha256, m.tokenizer
    L = info.num_layers
    depths = sorted({int(d) for d in c.names_arg(args.depths)} if args.depths else set(default_depths(L)), reverse=True)
    if any(not 1 <= d <= L for d in depths):
        raise ConfigError(f"--depths {depths} outside [1, {L}]")
    calib, calib_path = c.calib_ids(args, tokenizer, args.model)
    suite = c.EvalSuite.load(args, tokenizer, info.max_position_embeddings)
    em = ElasticModel(hf)
    em.eval()
    full = suite.evaluate(em, tasks=False)
    full["calibration_ppl"] = c.calibration_ppl(em, calib, args.calib_window, args.calib_windows, args.batch_size)
    cache: dict[str, dict[str, Any]] = {}
    results: dict[str, Any] = {}
    cfg = BaselineConfig(min_layers=min(depths), window=args.calib_window, num_windows=args.calib_windows, batch_size=args.batch_size)
    for name in methods:
        c.log(f"{name}: building the strategy, then evaluating depths {depths}")
        st = build_baseline_strategy(name, em, info, sha, calib, cfg)
        if args.strategies_dir is not None:
            st.save(Path(args.strategies_dir) / name)
        sem = ElasticModel(hf, st).eval()  # shares the wrapped linears with ``em``; one of them is active at a time
        rows: dict[str, Any] = {}
        for d in depths:
            spec = sem.set_shape(SubnetSpec(d))
            fp = c.subnet_fingerprint(st, spec)
            kept = list(st.kept_layers(d))
            if fp not in cache:
                ev = suite.evaluate(sem, tasks=False)
                ev["calibration_ppl"] = c.calibration_ppl(sem, calib, args.calib_window, args.calib_windows, args.batch_size)
                cache[fp] = ev | {"first_method": name}
            ev = cache[fp]
            rows[str(d)] = {"kept": kept, "removed": [i for i in range(L) if i not in kept], "fingerprint": fp,
                            "same_subnet_as": None if ev["first_method"] == name else ev["first_method"],
                            **{k: v for k, v in ev.items() if k != "first_method"}}
        meta = {k: v for k, v in st.meta.items() if k not in ("config",)}
        results[name] = {"reference": st.meta["reference"], "build_wall_s": st.meta["wall_s"], "meta": meta, "depths": rows}
    em.set_shape(SubnetSpec(L))
    return {
        **record.finish(),
        "what": "Table 3 analogue: depth-only selection, no fine-tuning; perplexity (lower is better)",
        "model": str(args.model), "model_sha256": sha, "num_layers": L,
        "calibration": {"file": str(calib_path), "window": args.calib_window, "windows": args.calib_windows},
        "eval": suite.describe(), "seed": args.seed, "depths": depths, "baseline_config": cfg.to_dict(),
        "full": full, "methods": results,
        "table": table_rows(results, depths),
    }


def table_rows(results: dict[str, Any], depths: list[int]) -> list[dict[str, Any]]:
    """One row per (method, depth): the three perplexities (flat, for docs/results.md)."""
    return [{"method": m, "depth": d, "wikitext2_ppl": r["depths"][str(d)]["wikitext2"]["ppl"], "book_ppl": r["depths"][str(d)]["book"]["ppl"],
             "calibration_ppl": r["depths"][str(d)]["calibration_ppl"], "removed": r["depths"][str(d)]["removed"]}
            for m, r in results.items() for d in depths]


def plot(doc: dict[str, Any], path: Path) -> Path:
    """Perplexity vs depth, one line per method (WikiText-2 and held-out books side by side)."""
    plt = c.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in zip(axes, ("wikitext2", "book"), ("WikiText-2 test", "held-out books"), strict=True):
        for m, r in doc["methods"].items():
            ds = sorted(int(d) for d in r["depths"])
            ys = [r["depths"][str(d)][key]["ppl"] for d in ds]
            ax.plot(ds, ys, marker="o", label=m)
        ax.axhline(doc["full"][key]["ppl"], color="grey", ls=":", label="full model")
        ax.set_yscale("log")
        ax.set_xlabel("kept layers")
        ax.set_ylabel("perplexity")
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle("Depth-only selection before fine-tuning")
    return c.save_png(fig, path)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if not args.no_plot:
        c.require_matplotlib()
    torch.set_num_threads(args.threads)
    record = c.RunRecord.start("table3.py", argv)
    doc = run(args, record)
    c.save_json(args.out, doc)
    if not args.no_plot:
        doc["plot"] = str(plot(doc, args.out.with_suffix(".png")))
        c.save_json(args.out, doc)
    return doc


if __name__ == "__main__":
    c.run_script(main)
