"""Markdown tables of the committed paper-reproduction results (the numbers ``docs/results.md`` quotes).

    python bench/paper/render.py table1   [--json bench/results/paper_table1.json]
    python bench/paper/render.py table3   [--json bench/results/paper_table3_smollm2.json]
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
DEFAULT_JSON = {"table1": "paper_table1.json", "table3": "paper_table3_smollm2.json", "figure3": "paper_figure3.json", "ablation": "stage2_ablation.json"}


def _f(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def paired_se(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Standard error of mean(a − b) over paired samples (the same perplexity windows scored by two models)."""
    if len(a) != len(b) or len(a) < 2:
        return None
    d = [x - y for x, y in zip(a, b, strict=True)]
    mu = sum(d) / len(d)
    return math.sqrt(sum((x - mu) ** 2 for x in d) / (len(d) - 1) / len(d))


def paired_mc_se(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """Standard error of the mean-acc_norm difference, paired item by item (``bench.mc_common.paired_mc_diff``)."""
    from bench.mc_common import paired_mc_diff

    if not a.get("tasks") or not b.get("tasks"):
        return None
    d = paired_mc_diff(a, b)
    return None if d is None else d[1]


def clear_winner(evs: dict[str, dict[str, Any]], measure: str) -> str | None:
    """The name whose ``measure`` beats every other by more than two standard errors, else ``None`` (entries equal
    to the best one, the same subnet reached by two methods, are not competitors).

    ``measure``: a perplexity stream (``wikitext2``, ``book``; lower NLL is better; paired over its windows, the
    unpaired NLL standard errors when windows are missing) or ``mc`` (mean acc_norm, higher is better; paired item
    by item when both kept ``hits_norm``, else the unpaired ``sqrt(se1² + se2²)``, which is conservative)."""
    def value(e: dict[str, Any]) -> float | None:
        return e.get("mc_mean_acc_norm") if measure == "mc" else e.get(measure, {}).get("nll")

    have = {n: e for n, e in evs.items() if value(e) is not None}
    if len(have) < 2:
        return None
    sign = -1.0 if measure == "mc" else 1.0
    best = min(have, key=lambda n: sign * value(have[n]))  # type: ignore[operator]
    for n, e in have.items():
        if n == best or e == have[best]:  # the same subnet chosen by two methods: not a competitor
            continue
        if measure == "mc":
            se = paired_mc_se(have[best], e)
            s1, s2 = have[best].get("mc_mean_acc_norm_stderr"), e.get("mc_mean_acc_norm_stderr")
            if se is None and s1 is not None and s2 is not None:
                se = math.sqrt(s1**2 + s2**2)
        else:
            a, b = have[best][measure], e[measure]
            se = paired_se(a.get("window_nll", []), b.get("window_nll", []))
            if se is None and a.get("nll_stderr") is not None and b.get("nll_stderr") is not None:
                se = math.sqrt(a["nll_stderr"] ** 2 + b["nll_stderr"] ** 2)
        gap = sign * (value(e) - value(have[best]))  # type: ignore[operator]
        if se is None or gap <= 2 * se:
            return None
    return best


def _ppl_se(e: dict[str, Any]) -> str:
    """``ppl ×/÷ exp(se)`` written as ``ppl (±x %)``."""
    se = e.get("nll_stderr")
    return _f(e["ppl"]) + ("" if se is None else f" (±{100 * (math.exp(se) - 1):.0f} %)")


def _mc_se(e: dict[str, Any]) -> str:
    m, se = e.get("mc_mean_acc_norm"), e.get("mc_mean_acc_norm_stderr")
    return "–" if m is None else f"{m:.3f}" + ("" if se is None else f" ± {se:.3f}")


def table3(doc: dict[str, Any]) -> str:
    """One block per depth: every method's removed layers, perplexities (± one se over windows), calibration
    perplexity and mean acc_norm ± se; bold = better than every other method by more than two standard errors."""
    out = []
    full = doc["full"]
    out.append(f"Full model ({doc['num_layers']} layers): WikiText-2 {_ppl_se(full['wikitext2'])}, books {_ppl_se(full['book'])}, "
               f"calibration {_f(full['calibration_ppl'])}, mean acc_norm {_mc_se(full)} (chance {_f(full.get('mc_mean_chance'), 3)}).")
    for d in doc["depths"]:
        evs = {m: r["depths"][str(d)] for m, r in doc["methods"].items()}
        win = {k: clear_winner(evs, k) for k in ("wikitext2", "book", "mc")}
        body = []
        for m, e in evs.items():
            cells = [_ppl_se(e["wikitext2"]), _ppl_se(e["book"]), _f(e["calibration_ppl"]), _mc_se(e)]
            cells = [f"**{x}**" if k and win[k] and e == evs[win[k]] else x for x, k in zip(cells, ("wikitext2", "book", None, "mc"), strict=True)]
            twin = f" (= {e['same_subnet_as']})" if e.get("same_subnet_as") else ""
            body.append([m + twin, " ".join(map(str, e["removed"])), *cells])
        out.append(f"**{d} of {doc['num_layers']} layers kept**\n\n"
                   + _table(["method", "removed layers", "WikiText-2 ppl", "books ppl", "calibration ppl", "mean acc_norm"], body))
    for m, ds in (doc.get("incomplete_methods") or {}).items():
        out.append(f"Not in this table yet: {m} (finished depths: {', '.join(map(str, ds)) or 'none'}; the run resumes).")
    out.append("Bold: better than every other method at that depth by more than two standard errors (perplexity: paired over "
               "the same windows; accuracy: paired item by item where the rows kept per-item hits, else unpaired). ± on perplexity: "
               "one standard error of the mean NLL, as a factor.")
    return "\n\n".join(out)


def table1(doc: dict[str, Any]) -> str:
    """One block per target: shape, fraction, WikiText-2 / books perplexity, mean acc_norm, per-task acc_norm."""
    rows = doc["rows"]
    tasks = sorted({t for r in rows for t in r["eval"].get("tasks", {})})
    out = []
    for target in sorted({r["target"] for r in rows}, reverse=True):
        block = sorted((r for r in rows if r["target"] == target), key=lambda r: (r["method"] != "amoeba", r["method"], r["stage"]))
        evs = {r["key"]: r["eval"] for r in block}
        win = {k: clear_winner(evs, k) for k in ("wikitext2", "book", "mc")}
        body = []
        for r in block:
            ev = r["eval"]
            cells = [_ppl_se(ev["wikitext2"]), _ppl_se(ev["book"]), _mc_se(ev)]
            cells = [f"**{x}**" if win[k] and ev == evs[win[k]] else x for x, k in zip(cells, ("wikitext2", "book", "mc"), strict=True)]
            body.append([r["label"], r["shape"], f"{100 * r['fraction']:.1f} %", *cells,
                         *(_f(ev.get("tasks", {}).get(t, {}).get("acc_norm"), 2) for t in tasks)])
        out.append(f"**{round(100 * target)} % of the decoder parameters**\n\n"
                   + _table(["method", "shape", "decoder params", "WikiText-2 ppl", "books ppl", "mean acc_norm", *tasks], body))
    chance = next((r["eval"].get("mc_mean_chance") for r in rows if r["eval"].get("mc_mean_chance") is not None), None)
    if chance is not None:
        out.append(f"Mean chance level over the tasks: {chance:.3f}.")
    out.append("Bold: better than every other row of its block by more than two standard errors (perplexity: paired over the "
               "same windows; accuracy: paired item by item where both rows kept per-item hits, else unpaired).")
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
        body.append(["geo. mean", *(_vs_full(summ[n]) if n != "full" else _f(summ[n]["geo_mean_ppl"]) for n in names)])
        out.append(f"**{title} perplexity**\n\n" + _table(["shape", *names], body))
    if doc["summary"].get("mc"):
        body = []
        for n, r in doc["summary"]["mc"].items():
            vs = "–" if "vs_full_acc_norm" not in r else f"{r['vs_full_acc_norm']:+.3f} ± {r['vs_full_acc_norm_se']:.3f}"
            body.append([n, f"{r['mean_acc_norm']:.3f}", f"**{vs}**" if r.get("beyond_2se") else vs, ", ".join(r["shapes"])])
        out.append("**Multiple choice** (mean acc_norm over the tasks and the shapes; change against `full` paired item by item)\n\n"
                   + _table(["variant", "mean acc_norm", "vs full", "shapes"], body))
    out.append("Geo. mean row: change against `full`; ± one standard error of that change, paired over the same windows "
               "(per window, the NLL difference averaged over the shapes); bold when it exceeds two standard errors.")
    return "\n\n".join(out)


def _vs_full(e: dict[str, Any]) -> str:
    """``ppl (+x.x % ± y.y %)``; bold when the change is beyond two standard errors."""
    text = f"{_f(e['geo_mean_ppl'])} ({e['vs_full_pct']:+.1f} %"
    if e.get("vs_full_nll_se") is not None:
        text += f" ± {100 * (math.exp(e['vs_full_nll_se']) - 1):.1f} %"
    text += ")"
    return f"**{text}**" if e.get("beyond_2se") else text


RENDER = {"table1": table1, "table3": table3, "figure3": figure3, "ablation": ablation}


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
