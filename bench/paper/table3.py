"""Table 3 analogue: depth-only layer selection before fine-tuning → ``bench/results/paper_table3.json`` (+ .png).

Methods (``core.baselines``): ``dp`` (AmoebaLLM's DP), ``angular`` (Unreasonable Ineffectiveness), ``ppl-block`` and
``taylor-block`` (Shortened LLaMA), ``drop-last``. All select on the same calibration windows; each depth is
scored on WikiText-2 test and on held-out books (perplexity, ``--max-windows`` windows spread over each text), the
multiple-choice tasks (``--tasks``, ``--limit`` items each; mean acc_norm with its standard error) and the
calibration perplexity itself. No fine-tuning anywhere. Identical subnets are evaluated once.

Every finished row is written to ``<out>.rows.json`` at once and every strategy is saved, so a killed run resumes
where it stopped (equal settings; ``--fresh`` starts over); depths and methods can be added by a later run.
``--reuse-dp DIR`` takes ``dp`` from a Stage 1 strategy made on the same calibration windows (its depth DP is ``dp``).

    python bench/paper/table3.py                               # defaults: models/amoeba-tiny-base, depths L-1 .. L/2
    python bench/paper/table3.py --depths 10,8,6 --max-windows 0 --tasks ''
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
    ap.add_argument("--reuse-dp", type=Path, default=None,
                    help="take dp from this Stage 1 strategy directory (same weights and calibration windows) instead of rerunning the DP")
    ap.add_argument("--strategies-dir", type=Path, default=None,
                    help="every method's strategy is saved here and reused by a rerun (default: <work-dir>/table3/<settings>)")
    ap.add_argument("--fresh", action="store_true", help="recompute everything (default: resume finished rows and strategies)")
    ap.add_argument("--report-only", action="store_true",
                    help="evaluate nothing: write the result from the finished rows (methods with a missing depth are listed as incomplete)")
    ap.add_argument("--no-plot", action="store_true", help="skip the PNG")
    ap.add_argument("--out", type=Path, default=c.RESULTS / "paper_table3.json")
    args = ap.parse_args(argv)
    c.apply_tiny(args)
    return args


def default_depths(num_layers: int) -> list[int]:
    """``L−1`` down to ``⌈L/2⌉`` (at least one depth)."""
    return list(range(num_layers - 1, max(1, (num_layers + 1) // 2) - 1, -1)) or [num_layers]


def settings_of(args: argparse.Namespace, sha: str, min_layers: int) -> dict[str, Any]:
    """Everything a row's numbers depend on (a rerun with equal settings resumes; depths and methods may change)."""
    return {**c.eval_settings(args, sha), "calib_text": str(args.calib_text), "calib_window": args.calib_window, "calib_windows": args.calib_windows,
            "min_layers": min_layers, "reuse_dp": None if args.reuse_dp is None else str(args.reuse_dp)}


def strategy_for(name: str, args: argparse.Namespace, em: Any, m: c.Models, calib: Any, cfg: Any, store: Path) -> c.Strategy:
    """The method's strategy: reused from ``store`` when a finished one for these settings is there, else built
    (``dp`` from ``--reuse-dp`` when given) and saved."""
    from core.baselines import build_baseline_strategy
    from core.baselines.registry import dp_from_stage1

    path = store / name
    if (path / "strategy.json").is_file() and not args.fresh:
        st = c.Strategy.load(path)
        if st.meta.get("config") == json.loads(json.dumps(cfg.to_dict())) and st.model_sha256 == m.sha256:
            c.log(f"{name}: strategy reused from {path}")
            return st
    if name == "dp" and args.reuse_dp is not None:
        st = dp_from_stage1(c.Strategy.load(args.reuse_dp), m.info, m.sha256, calib, cfg)
    else:
        st = build_baseline_strategy(name, em, m.info, m.sha256, calib, cfg)
    st.save(path)
    return st


def evaluate(suite: c.EvalSuite, target: Any, args: argparse.Namespace, calib: Any) -> dict[str, Any]:
    ev = suite.evaluate(target, tasks=bool(suite.items))
    ev["calibration_ppl"] = c.calibration_ppl(target, calib, args.calib_window, args.calib_windows, args.batch_size)
    return ev


def run(args: argparse.Namespace, record: c.RunRecord) -> dict[str, Any]:
    from core.baselines import BaselineConfig
    from core.elastic.model import ElasticModel
    from core.errors import ConfigError
    from core.spec import SubnetSpec

    methods = c.methods_arg(args.methods, "depth")
    if args.reuse_dp is not None and not (Path(args.reuse_dp) / "strategy.json").is_file():
        raise ConfigError(f"--reuse-dp {args.reuse_dp} is not a strategy directory (no strategy.json)")
    m = c.open_models(args, checkpoint=False)
    hf, info, sha, tokenizer = m.hf, m.info, m.sha256, m.tokenizer
    L = info.num_layers
    depths = sorted({int(d) for d in c.names_arg(args.depths)} if args.depths else set(default_depths(L)), reverse=True)
    if any(not 1 <= d <= L for d in depths):
        raise ConfigError(f"--depths {depths} outside [1, {L}]")
    calib, calib_path = c.calib_ids(args, tokenizer, args.model)
    suite = c.EvalSuite.load(args, tokenizer, info.max_position_embeddings)
    cfg = BaselineConfig(min_layers=min(depths), window=args.calib_window, num_windows=args.calib_windows, batch_size=args.batch_size)
    if args.reuse_dp is not None and "dp" in methods:  # a mismatch fails here, before any evaluation
        from core.baselines.registry import dp_from_stage1

        dp_from_stage1(c.Strategy.load(args.reuse_dp), info, sha, calib, cfg)
    settings = settings_of(args, sha, cfg.min_layers)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    store = Path(args.strategies_dir) if args.strategies_dir is not None else Path(args.work_dir) / "table3" / key
    header = {"what": "Table 3 analogue (rows in progress)", "settings": settings, "command": record.command}
    done = c.ResumableRows(args.out.with_suffix(".rows.json"), header, args.fresh)
    em = ElasticModel(hf)
    em.eval()
    if not done.have("full"):
        if args.report_only:
            raise c.DataMissingError(f"--report-only: {done.path} has no finished rows for these settings")
        c.log("full model")
        done.add({"key": "full", "eval": evaluate(suite, em, args, calib)})
    if "nll_stderr" not in done.rows["full"]["eval"]["wikitext2"]:
        done.rows["full"]["eval"] |= suite.perplexities(em)
        done.add(done.rows["full"])
    full = done.rows["full"]["eval"]
    results: dict[str, Any] = {}
    incomplete = [n for n in methods if args.report_only and not all(done.have(f"{n}:{d}") for d in depths)]
    for name in [n for n in methods if n not in incomplete]:
        c.log(f"{name}: strategy, then depths {depths}")
        st = strategy_for(name, args, em, m, calib, cfg, store)
        sem = ElasticModel(hf, st).eval()  # shares the wrapped linears with ``em``; one of them is active at a time
        by_fp = {r["fingerprint"]: r for r in done.rows.values() if "fingerprint" in r}
        rows: dict[str, Any] = {}
        for d in depths:
            spec = sem.set_shape(SubnetSpec(d))
            fp = c.subnet_fingerprint(st, spec)
            k = f"{name}:{d}"
            if not done.have(k):
                twin = by_fp.get(fp)
                kept_d = list(st.kept_layers(d))
                if twin is None:
                    c.log(f"{name}: depth {d}")
                    done.add({"key": k, "fingerprint": fp, "kept": kept_d, "same_subnet_as": None, "eval": evaluate(suite, sem, args, calib)})
                else:
                    done.add({"key": k, "fingerprint": fp, "kept": kept_d, "same_subnet_as": twin["key"].split(":")[0], "eval": twin["eval"]})
                by_fp.setdefault(fp, done.rows[k])
            row = done.rows[k]
            if row["same_subnet_as"] is None and "nll_stderr" not in row["eval"]["wikitext2"]:  # a row from before windows were kept
                c.log(f"{name}: depth {d}: per-window perplexity (the row predates it)")
                row["eval"] |= suite.perplexities(sem)
                done.add(row)
            elif "nll_stderr" not in row["eval"]["wikitext2"]:
                row["eval"] = done.rows[f"{row['same_subnet_as']}:{d}"]["eval"]
            kept = list(st.kept_layers(d))
            rows[str(d)] = {"kept": kept, "removed": [i for i in range(L) if i not in kept], "fingerprint": fp,
                            "same_subnet_as": row["same_subnet_as"], **row["eval"]}
        meta = {k: v for k, v in st.meta.items() if k not in ("config",)}
        results[name] = {"reference": st.meta["reference"], "build_wall_s": st.meta["wall_s"], "meta": meta, "depths": rows}
    em.set_shape(SubnetSpec(L))
    return {
        **record.finish(),
        "what": "Table 3 analogue: depth-only selection, no fine-tuning; perplexity (lower is better), mean MC acc_norm (higher is better)",
        "model": str(args.model), "model_sha256": sha, "num_layers": L,
        "calibration": {"file": str(calib_path), "window": args.calib_window, "windows": args.calib_windows},
        "eval": suite.describe(), "seed": args.seed, "depths": depths, "baseline_config": cfg.to_dict(), "settings": settings,
        "full": full, "methods": results, "incomplete_methods": {n: sorted(int(k.split(":")[1]) for k in done.rows if k.startswith(f"{n}:"))
                                                                 for n in incomplete},
        "table": table_rows(results, depths),
    }


def table_rows(results: dict[str, Any], depths: list[int]) -> list[dict[str, Any]]:
    """One row per (method, depth): the three perplexities and the mean MC acc_norm ± se (flat, for docs/results.md)."""
    return [{"method": m, "depth": d, "wikitext2_ppl": r["depths"][str(d)]["wikitext2"]["ppl"], "book_ppl": r["depths"][str(d)]["book"]["ppl"],
             "calibration_ppl": r["depths"][str(d)]["calibration_ppl"], "mc_mean_acc_norm": r["depths"][str(d)].get("mc_mean_acc_norm"),
             "mc_mean_acc_norm_stderr": r["depths"][str(d)].get("mc_mean_acc_norm_stderr"), "removed": r["depths"][str(d)]["removed"]}
            for m, r in results.items() for d in depths]


def plot(doc: dict[str, Any], path: Path) -> Path:
    """Perplexity vs depth, one line per method (WikiText-2, held-out books and, when measured, mean MC acc_norm)."""
    plt = c.pyplot()
    panels = [("wikitext2", "WikiText-2 test"), ("book", "held-out books")]
    has_mc = doc["full"].get("mc_mean_acc_norm") is not None
    fig, axes = plt.subplots(1, len(panels) + has_mc, figsize=(5 * (len(panels) + has_mc), 4))
    for ax, (key, title) in zip(axes, panels, strict=False):
        for m, r in doc["methods"].items():
            ds = sorted(int(d) for d in r["depths"])
            ax.plot(ds, [r["depths"][str(d)][key]["ppl"] for d in ds], marker="o", label=m)
        ax.axhline(doc["full"][key]["ppl"], color="grey", ls=":", label="full model")
        ax.set_yscale("log")
        ax.set_xlabel("kept layers")
        ax.set_ylabel("perplexity")
        ax.set_title(title)
    if has_mc:
        ax = axes[-1]
        for m, r in doc["methods"].items():
            ds = sorted(int(d) for d in r["depths"])
            ax.errorbar(ds, [r["depths"][str(d)]["mc_mean_acc_norm"] for d in ds], yerr=[r["depths"][str(d)]["mc_mean_acc_norm_stderr"] for d in ds],
                        marker="o", capsize=2, label=m)
        ax.axhline(doc["full"]["mc_mean_acc_norm"], color="grey", ls=":", label="full model")
        ax.axhline(doc["full"]["mc_mean_chance"], color="black", ls="--", lw=0.8, label="chance")
        ax.set_xlabel("kept layers")
        ax.set_ylabel("mean acc_norm (± 1 se)")
        ax.set_title("multiple choice")
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
