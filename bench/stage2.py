"""Stage 2 benchmark: perplexity of a grid of shapes before and after one-for-all fine-tuning → ``bench/results/stage2.json``.

Before: the base model + its Stage 1 strategy (``open_checkpoint`` on the base directory with ``strategy/``).
After: the AmoebaLLM checkpoint (SMoL adapters active), on the same base and the same strategy (checked).
Grid: every depth from the largest down to ``min_layers`` in steps of ``--depth-step`` (the smallest depth is always
included) × every (attention, MLP) width pair of the ladder (``--widths-mode diag``: the ladders' steps side by side, a = f when both ladders are the same).
Datasets: the WikiText-2 raw test split and the held-out books (``validation.txt`` of the prepared corpus: never
trained on). Each stream is scored on ``--max-windows`` windows of ``--window`` tokens spread evenly over it.

    python bench/stage2.py                                    # models/amoeba-tiny-base + models/amoeba-tiny-smol
    python bench/stage2.py --heldout runs/pretrain/corpus/validation.txt --widths-mode diag --depth-step 2
    python bench/stage2.py --tiny --out /tmp/stage2.json      # tiny random model, seconds (smoke test)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common_eval import (  # noqa: E402
    DATASETS,
    DEFAULT_EVAL,
    ROOT,
    add_common_args,
    advance_bar,
    command_line,
    eval_settings,
    eval_shapes,
    heldout_text,
    load_avg,
    load_streams,
    make_tiny_setup,
    rel_change,
    run_main,
    set_threads,
    strategy_diff,
    train_checkpoint,
)

from core.errors import ConfigError  # noqa: E402
from core.spec import ShapeSpace, SubnetSpec  # noqa: E402

WIDTHS_MODES = ("full", "diag")


def grid_shapes(space: ShapeSpace, depth_step: int = 1, widths_mode: str = "full") -> list[SubnetSpec]:
    """Depths ``L, L - step, ...`` plus ``min_layers`` (descending) × width pairs (``full``: a × f; ``diag``: a = f)."""
    if depth_step < 1:
        raise ConfigError(f"--depth-step must be >= 1, got {depth_step}")
    if widths_mode not in WIDTHS_MODES:
        raise ConfigError(f"--widths-mode must be one of {', '.join(WIDTHS_MODES)}, got {widths_mode!r}")
    depths = list(range(space.max_layers, space.min_layers - 1, -depth_step))
    if depths[-1] != space.min_layers:
        depths.append(space.min_layers)
    att, mlp = space.attn_ladder, space.widths
    if widths_mode == "full":
        pairs = [(a, f) for a in att for f in mlp]
    else:  # the i-th step of the longer ladder with the step at the same relative position of the other
        steps = max(len(att), len(mlp))
        pairs = sorted({(att[round(i * (len(att) - 1) / max(1, steps - 1))], mlp[round(i * (len(mlp) - 1) / max(1, steps - 1))]) for i in range(steps)},
                       reverse=True)
    return [SubnetSpec(n, a, f) for n in depths for a, f in pairs]


def compare(before: dict[str, dict[str, dict[str, Any]]], after: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per shape and dataset: perplexity before/after, nll before/after and the relative change of perplexity."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key, rows in before.items():
        out[key] = {}
        for ds, b in rows.items():
            a = after[key][ds]
            out[key][ds] = {"before": b["ppl"], "after": a["ppl"], "rel_change": rel_change(b["ppl"], a["ppl"]),
                            "nll_before": b["nll"], "nll_after": a["nll"]}
    return out


def summarize(shapes: dict[str, dict[str, dict[str, Any]]], worst: int = 5) -> dict[str, Any]:
    """Per dataset: how many shapes improved (after < before), the median/mean relative change, and the ``worst``
    shapes (largest relative change: least helped or hurt) and best ones. Plus shapes improved on every dataset."""
    out: dict[str, Any] = {}
    for ds in DATASETS:
        rows = [(k, v[ds]) for k, v in shapes.items() if ds in v]
        changes = [(k, r) for k, r in rows if r["rel_change"] is not None]
        ranked = sorted(changes, key=lambda kr: -kr[1]["rel_change"])

        def entry(k: str, r: dict[str, Any]) -> dict[str, Any]:
            return {"shape": k, "before": r["before"], "after": r["after"], "rel_change": r["rel_change"]}

        out[ds] = {
            "n": len(rows),
            "improved": sum(1 for _, r in changes if r["rel_change"] < 0),
            "not_improved": sum(1 for _, r in changes if r["rel_change"] >= 0),
            "median_rel_change": statistics.median(r["rel_change"] for _, r in changes) if changes else None,
            "mean_rel_change": statistics.fmean(r["rel_change"] for _, r in changes) if changes else None,
            "worst": [entry(k, r) for k, r in ranked[:worst]],
            "best": [entry(k, r) for k, r in ranked[::-1][:worst]],
        }
    out["improved_on_all_datasets"] = sum(
        1 for v in shapes.values() if all(v[ds]["rel_change"] is not None and v[ds]["rel_change"] < 0 for ds in DATASETS if ds in v))
    return out


def tiny_checkpoint(setup: Any, work: Path, threads: int) -> Path:
    """A few fine-tuning steps on the tiny setup (reused when already there)."""
    from core.finetune.config import FinetuneConfig
    from core.smol.config import SmolConfig

    out = work / "tiny-smol"
    if not (out / "amoeba_checkpoint.json").is_file():
        cfg = FinetuneConfig(adapter=SmolConfig(num_experts=3, rank=2, top_k=2), shapes_per_step=3, seq_len=16, batch_size=4, max_steps=4,
                             warmup_steps=1, lr=1e-2, checkpoint_every=4, eval_every=4, eval_batches=1, threads=threads)
        train_checkpoint(cfg, setup.base, setup.strategy, setup.corpus, work / "tiny-run", out)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, default=ROOT / "models" / "amoeba-tiny-base", help="base model dir with strategy/ (the 'before')")
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "amoeba-tiny-smol", help="AmoebaLLM checkpoint (the 'after')")
    ap.add_argument("--heldout", type=Path, default=None, help="held-out text (default: validation.txt of the corpus prepared from the shared data)")
    ap.add_argument("--depth-step", type=int, default=1)
    ap.add_argument("--widths-mode", choices=WIDTHS_MODES, default="full", help="full: every (attn, mlp) width pair; diag: attn = mlp")
    ap.add_argument("--worst", type=int, default=5, help="how many worst/best shapes the summary lists")
    ap.add_argument("--work-dir", type=Path, default=None, help="scratch dir (prepared corpus, --tiny models); default a temp dir")
    add_common_args(ap, ROOT / "bench" / "results" / "stage2.json")
    return ap.parse_args(argv)


def run(a: argparse.Namespace, argv: list[str], work: Path) -> dict[str, Any]:
    """Everything between the arguments and the JSON document."""
    from cli.common import progress
    from core.checkpoint import open_checkpoint
    from core.data.paths import data_dir
    from core.eval.target import load_tokenizer

    set_threads(a.threads)
    settings = eval_settings(a)
    load_before, t0 = load_avg(), time.perf_counter()
    base, ckpt, heldout, wikitext = a.base, a.checkpoint, a.heldout, a.wikitext_dir
    if a.tiny:
        setup = make_tiny_setup(work / "tiny")
        base, ckpt, wikitext = setup.base, tiny_checkpoint(setup, work, a.threads), wikitext or setup.wikitext
        heldout = heldout or setup.corpus / "validation.txt"
    heldout = heldout_text(heldout, a.data_dir, work)
    wikitext = wikitext or data_dir(a.data_dir) / "wikitext2"
    before = open_checkpoint(base)
    if before.kind != "base+strategy":
        raise ConfigError(f"--base {base} is an Amoeba checkpoint; pass the base model directory (with strategy/)")
    shapes = grid_shapes(before.strategy.space, a.depth_step, a.widths_mode)
    after = open_checkpoint(ckpt, base_dir=base)
    if after.kind != "amoeba":
        raise ConfigError(f"--checkpoint {ckpt} is not a fine-tuned Amoeba checkpoint (no amoeba_checkpoint.json)")
    diff = strategy_diff(before.strategy, after.strategy)
    if diff:
        raise ConfigError(f"the checkpoint's strategy differs from {base}/strategy in {', '.join(diff)}: before/after would not compare the same shapes")
    if before.tokenizer_dir is None:
        raise ConfigError(f"no tokenizer in {base}")
    streams = load_streams(load_tokenizer(before.tokenizer_dir), wikitext, heldout, settings, before.elastic.info.max_position_embeddings)
    results = {}
    with progress() as bar:
        for name, ck in (("before", before), ("after", after)):
            results[name] = eval_shapes(ck.elastic, shapes, streams, settings.batch_size, on_shape=advance_bar(bar, name, len(shapes)))
    rows = compare(results["before"], results["after"])
    meta = after.meta
    return {
        "command": command_line("stage2.py", argv),
        "tiny": a.tiny,
        "wall_s": round(time.perf_counter() - t0, 1),
        "load_avg_before": load_before,
        "load_avg_after": load_avg(),
        "torch_threads": a.threads,
        "base": {"path": str(base), "weights_sha256": before.meta["base"]["sha256"]},
        "before": {"kind": before.kind, "path": str(base), "checkpoint_sha256": before.checkpoint_sha256},
        "after": {"kind": after.kind, "path": str(ckpt), "checkpoint_sha256": after.checkpoint_sha256, "step": meta.get("step"),
                  "tokens_seen": meta.get("tokens_seen"), "training": meta.get("training")},
        "eval": {**settings.to_dict(), "window_used": next(iter(streams.values())).window, "defaults": DEFAULT_EVAL.to_dict(),
                 "window_selection": "max_windows non-overlapping windows at evenly spaced positions (first and last included); "
                                     "all windows when max_windows is null", "bos": "as the tokenizer adds it (like amoeba eval)",
                 "datasets": {k: s.describe() for k, s in streams.items()}},
        "grid": {"depth_step": a.depth_step, "widths_mode": a.widths_mode, "depths": sorted({s.num_layers for s in shapes}, reverse=True),
                 "widths": list(before.strategy.space.widths), "n_shapes": len(shapes)},
        "shapes": rows,
        "summary": summarize(rows, a.worst),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = parse_args(argv)
    doc = run_main(a, lambda work: run(a, argv, work), None)
    if doc is None:
        return 2
    s = doc["summary"]
    print(f"wrote {a.out}: {doc['grid']['n_shapes']} shapes, improved " + ", ".join(f"{ds} {s[ds]['improved']}/{s[ds]['n']}" for ds in DATASETS)
          + f" ({doc['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
