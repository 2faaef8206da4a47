"""Table 1 analogue: AmoebaLLM vs baselines at 80 / 65 / 50 % remaining parameters → ``bench/results/paper_table1.json``.

Per target (decoder-layer parameter fraction, ``core.baselines.targets`` for the rule):
- ``AmoebaLLM``: the one-for-all checkpoint (Stage 2 adapters, no further training) at the best calibration-ppl
  shape within ±``--tolerance`` of the target;
- ``AmoebaLLM†``: the same shape from the Stage 1 strategy, fine-tuned alone with one LoRA;
- every baseline (``--methods``): its closest shape, pruned (no fine-tuning) and after one LoRA fine-tuned on
  that shape alone. Every per-shape LoRA gets the same budget: ``--ft-steps`` × batch × seq_len tokens,
  by default the one-for-all run's own steps, batch and sequence length (its optimiser settings too).
Metrics: WikiText-2 and held-out-book perplexity, multiple-choice acc / acc_norm (expect near chance at this
scale). The JSON is rewritten after every row; rerunning with the same settings resumes (finished rows are kept).

    python bench/paper/table1.py                                        # needs models/amoeba-tiny-smol
    python bench/paper/table1.py --methods flap,ppl-block --ft-steps 100 --limit 100
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

try:
    from bench.paper import common as c
except ModuleNotFoundError:  # run as a file: python bench/paper/table1.py
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench.paper import common as c

DEFAULT_METHODS = "ppl-block,taylor-block,angular,flap,llm-pruner,magnitude"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    c.add_common_args(ap)
    ap.add_argument("--checkpoint", type=Path, default=c.DEFAULT_CHECKPOINT, help="AmoebaLLM checkpoint (or a base dir with strategy/)")
    ap.add_argument("--targets", default="0.8,0.65,0.5", help="remaining decoder-parameter fractions")
    ap.add_argument("--tolerance", type=float, default=0.02, help="AmoebaLLM: candidate shapes within ± this fraction of the target")
    ap.add_argument("--methods", default=DEFAULT_METHODS, help="baselines (core.baselines)")
    ap.add_argument("--width-ladder", default=c.FINE_WIDTHS, help="width ladder of the width baselines")
    ap.add_argument("--min-layers", type=int, default=None, help="shallowest depth of the depth baselines (default: ⌊min target·L⌋ − 1)")
    ap.add_argument("--ft-steps", type=int, default=None, help="per-shape LoRA steps (default: the checkpoint's steps)")
    ap.add_argument("--ft-batch-size", type=int, default=None, help="per-shape LoRA batch (default: the checkpoint's)")
    ap.add_argument("--ft-seq-len", type=int, default=None, help="per-shape LoRA sequence length (default: the checkpoint's)")
    ap.add_argument("--no-finetune", action="store_true", help="skip every per-shape LoRA (AmoebaLLM† and baselines + LoRA)")
    ap.add_argument("--fresh", action="store_true", help="ignore finished rows in --out")
    ap.add_argument("--reuse-evals", default="", help="rows files (Table 3, DP variants) whose evaluations of identical pruned subnets are reused")
    ap.add_argument("--out", type=Path, default=c.RESULTS / "paper_table1.json")
    args = ap.parse_args(argv)
    c.apply_tiny(args, ft_steps=2, ft_batch_size=2, ft_seq_len=16, width_ladder="1,3/4,1/2")
    return args


def lora_config(args: argparse.Namespace, ck_meta: dict[str, Any]) -> Any:
    """Per-shape LoRA settings: the one-for-all run's (from its checkpoint), overridden by ``--ft-*``."""
    from core.baselines.shape_lora import ShapeLoraConfig
    from core.finetune.config import FinetuneConfig

    fc = FinetuneConfig.from_dict(ck_meta["training"]) if ck_meta.get("training") else FinetuneConfig()
    steps = args.ft_steps or int(ck_meta.get("step") or fc.max_steps)
    return ShapeLoraConfig(steps=steps, batch_size=args.ft_batch_size or fc.batch_size, seq_len=args.ft_seq_len or fc.seq_len, lr=fc.lr,
                           min_lr_ratio=fc.min_lr_ratio, warmup_steps=min(fc.warmup_steps, steps), grad_clip=fc.grad_clip,
                           rank=fc.adapter.rank, alpha=fc.adapter.alpha, targets=fc.adapter.targets, seed=args.seed)


def evaluate_row(rows: c.ResumableRows, suite: c.EvalSuite, key: str, base: dict[str, Any], model: Any, lora: tuple[Any, Any, Any] | None = None,
                 reused: dict[str, Any] | None = None) -> None:
    """Evaluate ``model`` at its active shape and store the row; with ``lora = (spec, train_tokens, ShapeLoraConfig)``
    one LoRA is first trained on ``spec`` alone (and detached after the evaluation). ``reused``: an evaluation of
    this very subnet by another script with the same settings, taken instead of evaluating again."""
    if rows.have(key):
        c.log(f"{key}: done earlier (resumed)")
        return
    if reused is not None and lora is None:
        c.log(f"{key}: {base['shape']}: the same subnet was evaluated with the same settings elsewhere (reused)")
        rows.add({"key": key, **base, "finetune": None, "eval": reused, "eval_reused": True})
        return
    c.log(f"{key}: {base['shape']}" + (" (per-shape LoRA first)" if lora is not None else ""))
    adapters, ft = _train(model, *lora) if lora is not None else (None, None)
    try:
        ev = suite.evaluate(model)
    finally:
        if adapters is not None:
            adapters.detach(model)
    rows.add({"key": key, **base, "finetune": ft, "eval": ev})


def run(args: argparse.Namespace, record: c.RunRecord) -> dict[str, Any]:
    from core.baselines import BaselineConfig, build_baseline_strategy
    from core.baselines.targets import best_within, closest_shape, shape_options
    from core.elastic.model import ElasticModel

    targets, methods = c.floats_arg(args.targets), c.methods_arg(args.methods)
    m = c.open_models(args, checkpoint=True)
    hf, info, sha, tokenizer, ck = m.hf, m.info, m.sha256, m.tokenizer, m.checkpoint
    m.checkpoint = None
    L = info.num_layers
    min_layers = args.min_layers or max(1, math.floor(min(targets) * L) - 1)
    calib, calib_path = c.calib_ids(args, tokenizer, args.checkpoint, args.model)
    train_tokens = c.file_tokens(Path(args.corpus_dir) / "train.txt", tokenizer, args.work_dir)
    suite = c.EvalSuite.load(args, tokenizer, info.max_position_embeddings)
    lcfg = lora_config(args, ck.meta)

    def calib_score(model: Any) -> Callable[[Any], float]:
        def score(spec: Any) -> float:
            model.set_shape(spec)
            return c.calibration_ppl(model, calib, args.calib_window, args.calib_windows, args.batch_size)

        return score

    one_for_all = {"kind": ck.kind, "steps": ck.meta.get("step"), "tokens_seen": ck.meta.get("tokens_seen"),
                   "shapes_per_step": (ck.meta.get("training") or {}).get("shapes_per_step")}
    settings = {**c.eval_settings(args, sha), "checkpoint_sha256": ck.checkpoint_sha256, "targets": targets, "tolerance": args.tolerance,
                "width_ladder": list(c.widths_arg(args.width_ladder)), "min_layers": min_layers, "lora": lcfg.to_dict(),
                "calibration": {"file": str(calib_path), "window": args.calib_window, "windows": args.calib_windows},
                "eval": suite.describe(), "seed": args.seed, "finetune": not args.no_finetune}
    header = {"what": "Table 1 analogue: remaining decoder parameters vs quality; AmoebaLLM one-for-all vs per-shape fine-tuning",
              "model": str(args.model), "checkpoint": str(args.checkpoint), "one_for_all": one_for_all, "settings": settings}
    rows = c.ResumableRows(args.out, header, args.fresh)
    reuse = c.reusable_evals([Path(x) for x in c.names_arg(args.reuse_evals)], c.eval_settings(args, sha))

    # AmoebaLLM (one-for-all) and AmoebaLLM† (the same shape, one LoRA on the Stage 1 strategy)
    options = shape_options(info, ck.strategy, diagonal=False)
    choices = {t: best_within(options, t, args.tolerance, calib_score(ck.elastic)) for t in targets}
    dagger = ElasticModel(hf, ck.strategy).eval()
    for t, ch in choices.items():
        base = {"method": "amoeba", "target": t, "shape": ch.spec.key, "fraction": ch.fraction, "total_fraction": ch.total_fraction,
                "choice": ch.to_dict(), "compensation_bias": bool(ck.strategy.biases),
                "bias_modules": list(ck.strategy.bias_modules)}
        ck.elastic.set_shape(ch.spec)
        label = "AmoebaLLM" if ck.kind == "amoeba" else "AmoebaLLM (Stage 1 only: no Stage 2 checkpoint)"
        evaluate_row(rows, suite, f"amoeba|{t}|one-for-all", {**base, "label": label, "stage": "one-for-all"}, ck.elastic)
        if not args.no_finetune:
            evaluate_row(rows, suite, f"amoeba|{t}|lora", {**base, "label": "AmoebaLLM†", "stage": "per-shape-lora"}, dagger,
                         (ch.spec, train_tokens, lcfg))
    del ck

    dense = ElasticModel(hf)
    cfg = BaselineConfig(min_layers=min_layers, widths=c.widths_arg(args.width_ladder), window=args.calib_window,
                         num_windows=args.calib_windows, batch_size=args.batch_size)
    for name in methods:
        stages = ["pruned"] + ([] if args.no_finetune else ["lora"])
        if all(rows.have(f"{name}|{t}|{s}") for t in targets for s in stages):
            continue
        st = build_baseline_strategy(name, dense, info, sha, calib, cfg)
        sem = ElasticModel(hf, st).eval()
        opts = shape_options(info, st, diagonal=True)
        for t in targets:
            ch = closest_shape(opts, t)
            base = {"method": name, "target": t, "shape": ch.spec.key, "fraction": ch.fraction, "total_fraction": ch.total_fraction,
                    "choice": ch.to_dict(), "reference": st.meta["reference"], "compensation_bias": bool(st.biases),
                    "bias_modules": list(st.bias_modules)}
            sem.set_shape(ch.spec)
            fp = c.subnet_fingerprint(st, ch.spec)
            evaluate_row(rows, suite, f"{name}|{t}|pruned", {**base, "label": f"{name} (no FT)", "stage": "pruned", "fingerprint": fp}, sem,
                         reused=reuse.get(fp))
            if not args.no_finetune:
                evaluate_row(rows, suite, f"{name}|{t}|lora", {**base, "label": f"{name} + LoRA", "stage": "per-shape-lora"}, sem,
                             (ch.spec, train_tokens, lcfg))
    return {**header, **record.finish(), "rows": list(rows.rows.values()), "table": table(list(rows.rows.values()))}


def _train(model: Any, spec: Any, train_tokens: Any, cfg: Any) -> tuple[Any, dict[str, Any]]:
    """One per-shape LoRA on ``model`` at ``spec``; returns (attached adapters, result dict)."""
    from core.baselines.shape_lora import finetune_shape

    adapters, result = finetune_shape(model, spec, train_tokens, cfg)
    model.set_shape(spec)
    return adapters, result.to_dict()


def table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows sorted by target (descending) then label: the numbers docs/results.md quotes."""
    out = []
    for r in sorted(rows, key=lambda r: (-r["target"], r["label"])):
        ev = r["eval"]
        out.append({"target": r["target"], "label": r["label"], "shape": r["shape"], "fraction": round(r["fraction"], 4),
                    "wikitext2_ppl": ev["wikitext2"]["ppl"], "book_ppl": ev["book"]["ppl"], "mc_mean_acc_norm": ev.get("mc_mean_acc_norm"),
                    "mc_mean_chance": ev.get("mc_mean_chance"),
                    "tasks_acc_norm": {t: v["acc_norm"] for t, v in ev.get("tasks", {}).items()},
                    "finetune_tokens": (r["finetune"] or {}).get("tokens_seen")})
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return c.run_recipe("table1.py", parse_args, run, argv)


if __name__ == "__main__":
    c.run_script(main)
