"""Markdown tables of the committed paper-reproduction results (the numbers ``docs/results.md`` quotes).

    python bench/paper/render.py table1   [--json bench/results/paper_table1.json]
    python bench/paper/render.py figure3  [--json bench/results/paper_figure3.json]
    python bench/paper/render.py ablation [--json bench/results/stage2_ablation.json]

Reads one result JSON, prints Markdown on stdout; computes nothing but summaries of the stored numbers.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
DEFAULT_JSON = {"table1": "paper_table1.json", "figure3": "paper_figure3.json", "ablation": "stage2_ablation.json"}


def _f(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def table1(doc: dict[str, Any]) -> str:
    """One block per target: shape, fraction, WikiText-2 / books perplexity, mean acc_norm, per-task acc_norm."""
    rows = doc["rows"]
    tasks = sorted({t for r in rows for t in r["eval"].get("tasks", {})})
    out = []
    for target in sorted({r["target"] for r in rows}, reverse=True):
        block = sorted((r for r in rows if r["target"] == target), key=lambda r: (r["method"] != "amoeba", r["method"], r["stage"]))
        best_w = min(r["eval"]["wikitext2"]["ppl"] for r in block)
        best_b = min(r["eval"]["book"]["ppl"] for r in block)
        body = []
        for r in block:
            ev = r["eval"]
            w, b = ev["wikitext2"]["ppl"], ev["book"]["ppl"]
            body.append([r["label"], r["shape"], f"{100 * r['fraction']:.1f} %", f"**{_f(w)}**" if w == best_w else _f(w),
                         f"**{_f(b)}**" if b == best_b else _f(b), _f(ev.get("mc_mean_acc_norm"), 3),
                         *(_f(ev.get("tasks", {}).get(t, {}).get("acc_norm"), 2) for t in tasks)])
        out.append(f"**{round(100 * target)} % of the decoder parameters**\n\n"
                   + _table(["method", "shape", "decoder params", "WikiText-2 ppl", "books ppl", "mean acc_norm", *tasks], body))
    chance = next((r["eval"].get("mc_mean_chance") for r in rows if r["eval"].get("mc_mean_chance") is not None), None)
    if chance is not None:
        out.append(f"Mean chance level over the tasks: {chance:.3f}.")
    return "\n\n".join(out)


def figure3(doc: dict[str, Any]) -> str:
    """Per method: points, and the best WikiText-2 perplexity reachable under a few tpot budgets (from the points)."""
    pts = [p for p in doc["points"] if not p.get("finetuned")]
    tpots = sorted(p["latency"]["tpot_ms"] for p in pts)
    budgets = [tpots[round(q * (len(tpots) - 1))] for q in (0.1, 0.25, 0.5, 0.75, 1.0)]
    labels = list(dict.fromkeys(p["label"] for p in pts))
    body = []
    for label in labels:
        mine = [p for p in pts if p["label"] == label]
        cells = []
        for b in budgets:
            fit = [p for p in mine if p["latency"]["tpot_ms"] <= b]
            cells.append(f"{_f(min(p['wikitext2_ppl'] for p in fit))} ({min(fit, key=lambda p: p['wikitext2_ppl'])['shape']})" if fit else "–")
        body.append([label, str(len(mine)), f"{min(p['latency']['tpot_ms'] for p in mine):.2f}", *cells])
    text = _table(["method", "points", "fastest tpot (ms)", *(f"tpot ≤ {b:.2f} ms" for b in budgets)], body)
    tuned = [p for p in doc["points"] if p.get("finetuned")]
    if tuned:
        rows = [[p["label"], p["shape"], f"{p['latency']['tpot_ms']:.2f}", _f(p["wikitext2_ppl"]), _f(p["book_ppl"]), _f(p["mc_mean_acc_norm"], 3)]
                for p in sorted(tuned, key=lambda p: (p["latency"]["tpot_ms"], p["label"]))]
        text += "\n\nFine-tuned points (Table 1 overlay):\n\n" + _table(["method", "shape", "tpot (ms)", "WikiText-2 ppl", "books ppl", "mean acc_norm"], rows)
    busy = sum(1 for p in doc["points"] if p["latency"].get("busy"))
    return text + (f"\n\nBest WikiText-2 perplexity (and its shape) among each method's points under each tpot budget; "
                   f"{busy} of {len(doc['points'])} points measured while the machine was marked busy.")


def ablation(doc: dict[str, Any]) -> str:
    """Perplexity per shape and variant (reference = no fine-tuning) plus the geometric means."""
    shapes = doc["settings"]["shapes"]
    names = ["reference"] + [n for n, v in doc["variants"].items() if v.get("results")]
    results = {"reference": doc["reference"]["results"], **{n: doc["variants"][n]["results"] for n in names[1:]}}
    out = []
    for data, title in (("wikitext2", "WikiText-2 test"), ("heldout", "held-out books")):
        body = []
        for s in shapes:
            vals = {n: results[n][s][data]["ppl"] for n in names}
            best = min(v for n, v in vals.items() if n != "reference")
            body.append([s, *(f"**{_f(vals[n])}**" if n != "reference" and vals[n] == best else _f(vals[n]) for n in names)])
        summ = doc["summary"][data]
        body.append(["geo. mean", *(f"{_f(summ[n]['geo_mean_ppl'])} ({summ[n]['vs_full_pct']:+.1f} %)" if n != "full" else _f(summ[n]["geo_mean_ppl"])
                                    for n in names)])
        out.append(f"**{title} perplexity**\n\n" + _table(["shape", *names], body))
    return "\n\n".join(out)


RENDER = {"table1": table1, "figure3": figure3, "ablation": ablation}


def main(argv: Sequence[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=tuple(RENDER))
    ap.add_argument("--json", type=Path, default=None, help="result file (default: the committed one under bench/results)")
    a = ap.parse_args(argv)
    path = a.json or RESULTS / DEFAULT_JSON[a.what]
    if not path.is_file():
        raise SystemExit(f"error: {path} not found (run the script that writes it first)")
    text = RENDER[a.what](json.loads(path.read_text()))
    print(text)
    return text


if __name__ == "__main__":
    main()
