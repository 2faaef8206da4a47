"""Seven-task multiple choice (with standard errors) and WikiText-2 perplexity of SmolLM2 shapes, before and after
one-for-all fine-tuning, plus the packed-vs-plain scoring speed-up measured side by side (issue 12, item 6).

    python bench/mc_eval.py --speed 40 --threads 2                      # packed vs plain, 40 items per task
    python bench/mc_eval.py --shapes L30-a1-f1,L25-a0.666667-f0.875 --limit 500 --threads 2

Variants: ``pruned`` = base + Stage 1 strategy, no adapters (at the full shape: stock SmolLM2); ``amoeba`` = the
checkpoint with its SMoL adapters. Every (variant, shape) result is written to ``--out`` when it finishes, so a
killed run resumes where it stopped. Load average is recorded before and after each piece.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.atomic import write_json  # noqa: E402
from core.eval.multiple_choice import build_requests, evaluate_items, pack_requests, score_items  # noqa: E402
from core.eval.perplexity import perplexity_of_text  # noqa: E402
from core.eval.recipe import EvalPlan, load_inputs  # noqa: E402
from core.eval.target import EvalTarget, open_checkpoint_target, open_elastic_target  # noqa: E402

TASKS = ("piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "boolq", "openbookqa")
ROOT = Path(__file__).resolve().parents[1]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def open_variant(variant: str, shape: str, checkpoint: Path, base: Path) -> EvalTarget:
    """``pruned``: base + the checkpoint's strategy at ``shape``; ``amoeba``: the checkpoint at ``shape``."""
    if variant == "amoeba":
        return open_checkpoint_target(checkpoint, shape)
    if variant == "pruned":
        return open_elastic_target(base, checkpoint / "strategy", shape)
    raise SystemExit(f"unknown variant {variant!r}; known: pruned, amoeba")


def token_counts(target: EvalTarget, its: list[Any]) -> dict[str, int]:
    """Tokens forwarded and positions sent through the LM head, plain vs packed (padding excluded)."""
    reqs = build_requests(target.tokenizer, its, target.max_positions)
    distinct = {r.tokens for r in reqs}
    rows = pack_requests(reqs)
    plain = sum(len(t) for t in distinct)
    return {"plain_tokens": plain, "packed_tokens": sum(len(r) for r in rows), "plain_head_positions": plain,
            "packed_head_positions": sum(len(s.rows) for r in rows for s in r.spans)}


def speed(target: EvalTarget, items: dict[str, list[Any]], batch_size: int) -> dict[str, Any]:
    """Packed and plain scoring of the same items in ABBA order per task (two timings each, summed), the token
    counts, and the max |Δ log-likelihood| between the two."""
    rows: dict[str, Any] = {}
    for task, its in items.items():
        secs = {True: 0.0, False: 0.0}
        res: dict[bool, Any] = {}
        for packed in (True, False, False, True):
            t0 = time.perf_counter()
            res[packed] = score_items(target.logits_fn, target.tokenizer, its, target.max_positions, batch_size=batch_size, packed=packed)
            secs[packed] += time.perf_counter() - t0
        pk, pl = res[True], res[False]
        delta = max(abs(a - b) for p, q in zip(pk, pl, strict=True) for a, b in zip(p.loglikelihoods, q.loglikelihoods, strict=True))
        same = sum((p.pred, p.pred_norm) == (q.pred, q.pred_norm) for p, q in zip(pk, pl, strict=True))
        rows[task] = {"items": len(its), "packed_s": round(secs[True], 2), "plain_s": round(secs[False], 2),
                      "speedup": round(secs[False] / secs[True], 2), "max_abs_dll": delta, "same_predictions": same} | token_counts(target, its)
    tot_p = sum(r["packed_s"] for r in rows.values())
    tot_u = sum(r["plain_s"] for r in rows.values())
    tok_p = sum(r["packed_tokens"] for r in rows.values())
    tok_u = sum(r["plain_tokens"] for r in rows.values())
    return {"tasks": rows, "packed_s": round(tot_p, 2), "plain_s": round(tot_u, 2), "speedup": round(tot_u / tot_p, 2),
            "token_ratio": round(tok_u / tok_p, 2)}


def evaluate(target: EvalTarget, inputs: Any, batch_size: int, ppl_windows: int, ppl_window: int) -> dict[str, Any]:
    """WikiText-2 perplexity on the first ``ppl_windows`` windows and every task, with wall seconds per piece."""
    out: dict[str, Any] = {"tasks": {}, "seconds": {}}
    t0 = time.perf_counter()
    ppl = perplexity_of_text(target.logits_fn, target.tokenizer, inputs.texts["wikitext2"], ppl_window, batch_size=1, max_windows=ppl_windows)
    out["wikitext2"] = ppl.to_dict()
    out["seconds"]["wikitext2"] = round(time.perf_counter() - t0, 1)
    for task, its in inputs.items.items():
        t0 = time.perf_counter()
        out["tasks"][task] = evaluate_items(task, target.logits_fn, target.tokenizer, its, target.max_positions, batch_size=batch_size).to_dict()
        out["seconds"][task] = round(time.perf_counter() - t0, 1)
    accs = [r["acc_norm"] for r in out["tasks"].values()]
    out["mean_acc_norm"] = sum(accs) / len(accs)
    # the mean of independent task means: its standard error combines the per-task ones
    out["mean_acc_norm_stderr"] = (sum(r["acc_norm_stderr"] ** 2 for r in out["tasks"].values()) ** 0.5) / len(accs)
    out["seconds"]["total"] = round(sum(out["seconds"].values()), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "models/amoeba-smollm2-smol")
    ap.add_argument("--base", type=Path, default=ROOT / "models/smollm2-135m")
    ap.add_argument("--shapes", default="L30-a1-f1")
    ap.add_argument("--variants", default="pruned,amoeba")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--ppl-windows", type=int, default=16)
    ap.add_argument("--ppl-window", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--speed", type=int, default=0, help="only compare packed and plain scoring on N items per task")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/mc_smollm2.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tasks = tuple(t for t in a.tasks.split(",") if t)
    limit = a.speed or a.limit
    plan = EvalPlan(wikitext2=not a.speed, tasks=tasks, limit=limit, seed=a.seed, data_root=a.data_root)
    inputs = load_inputs(plan)
    res: dict[str, Any] = json.loads(a.out.read_text()) if a.out.is_file() else {}
    res.setdefault("runs", {})
    command = "python bench/mc_eval.py " + " ".join(sys.argv[1:])
    res["command"] = command  # the latest invocation; each run and the speed entry keep their own
    res["plan"] = {"tasks": list(tasks), "limit": limit, "seed": a.seed, "batch_size": a.batch_size, "threads": a.threads,
                   "ppl_windows": a.ppl_windows, "ppl_window": a.ppl_window, "items": {t: len(v) for t, v in inputs.items.items()}}
    if a.speed:
        target = open_variant("pruned", a.shapes.split(",")[0], a.checkpoint, a.base)
        before = _load()
        res["speed"] = speed(target, inputs.items, a.batch_size) | {"shape": target.shape, "load_before": before, "load_after": _load(), "command": command}
        full = load_inputs(EvalPlan(tasks=tasks, limit=a.limit, seed=a.seed, data_root=a.data_root))
        res["speed"]["full_plan_tokens"] = {t: token_counts(target, v) for t, v in full.items.items()}
        write_json(a.out, res)
        print(json.dumps(res["speed"], indent=1))
        return
    for shape in a.shapes.split(","):
        for variant in a.variants.split(","):
            key = f"{variant}:{shape}"
            if key in res["runs"] and res["runs"][key].get("plan_limit") == limit:
                print(f"{key}: done, skipped")
                continue
            target = open_variant(variant, shape, a.checkpoint, a.base)
            before = _load()
            r = evaluate(target, inputs, a.batch_size, a.ppl_windows, a.ppl_window)
            res["runs"][key] = r | {"variant": variant, "shape": target.shape, "plan_limit": limit, "load_before": before, "load_after": _load(),
                                  "command": command}
            write_json(a.out, res)
            print(f"{key}: mean acc_norm {r['mean_acc_norm']:.3f} ± {r['mean_acc_norm_stderr']:.3f}, "
                  f"wikitext2 {r['wikitext2']['ppl']:.1f}, {r['seconds']['total']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
