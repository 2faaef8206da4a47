"""Markdown tables of ``bench/results/latency_cpu.json`` (what docs/profilers.md quotes), generated from the JSON.

    python bench/latency_report.py [bench/results/latency_cpu.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _held(p: dict[str, Any], q: str) -> str:
    t = p.get(q)
    if not t:
        return "–"
    s = t[t["chosen"]]
    return f"{s['mape_pct']:.1f} % / {s['within_10pct']:.0%} ({t['chosen']})"


def _floor(f: dict[str, Any] | None, q: str) -> str:
    if not f:
        return "–"
    x = f[q]
    return f"{x['median_abs_delta_pct']:.1f} % / {x['within_10pct']:.0%}"


def render(doc: dict[str, Any]) -> str:
    flows = doc.get("flows", {})
    out = ["| flow | shapes | busy / re-measured | load before → after (quiet flag) | noise floor TTFT: median \\|Δ\\| / within ±10 % | TPOT | "
           "held-out TTFT: MAPE / within ±10 % | TPOT |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, f in flows.items():
        if "unavailable" in f:
            out.append(f"| {name} | unavailable: {f['unavailable']} | | | | | | |")
            continue
        p = f.get("predictor", {})
        out.append(f"| {name} | {f['shapes']} | {f['busy_rows']} / {f['remeasured_rounds']} | {f['load_avg_before'][0]} → {f['load_avg_after'][0]} "
                   f"({'yes' if f['quiet_flag_at_start'] else 'no'}) | {_floor(f.get('noise_floor'), 'ttft_ms')} | {_floor(f.get('noise_floor'), 'tpot_ms')} | "
                   f"{_held(p, 'ttft_ms')} | {_held(p, 'tpot_ms')} |")
    out += ["", "| flow | narrow | TPOT speed-up width 1 / narrow, per depth | TTFT speed-up per depth | full / half depth TPOT, TTFT |",
            "| --- | --- | --- | --- | --- |"]
    for name, f in flows.items():
        if "speedups" not in f:
            continue
        sp = f["speedups"]
        depths = sorted(sp["per_depth"], key=int, reverse=True)
        tp = " / ".join(f"{d}: {sp['per_depth'][d]['tpot_w1_over_narrow']}" for d in depths)
        tt = " / ".join(f"{d}: {sp['per_depth'][d]['ttft_w1_over_narrow']}" for d in depths)
        h = sp["half_depth"]
        out.append(f"| {name} | {sp['narrow']} | {tp} | {tt} | L{h['full']}/L{h['half']}: {h['tpot_full_over_half']}, {h['ttft_full_over_half']} |")
    out += ["", "| flow | full grid: shapes, measuring s, CV MAPE TTFT/TPOT | adaptive to 5 %/95 %: shapes, s, stop, unmeasured MAPE TTFT/TPOT | "
            "adaptive to the full grid's error: shapes, s, stop, unmeasured MAPE TTFT/TPOT |", "| --- | --- | --- | --- |"]
    for name, f in flows.items():
        a = f.get("adaptive")
        if not a or "full_grid" not in a:
            continue
        g = a["full_grid"]

        def cell(e: dict[str, Any]) -> str:
            um = "/".join(f"{e[k]['mape_pct']:.1f} %" for k in ("unmeasured_ttft_ms", "unmeasured_tpot_ms") if k in e) or "–"
            return f"{e['shapes']}, {e['measure_s']:.0f} s, {e['stop']}, {um}"

        out.append(f"| {name} | {g['shapes']}, {g['measure_s']:.0f} s, {g['cv_mape_pct']['ttft_ms']:.1f} % / {g['cv_mape_pct']['tpot_ms']:.1f} % | "
                   f"{cell(a['bar_5pct_95pct'])} | {cell(a['same_as_full_grid'])} |")
    cmds = sorted({f["command"] for f in flows.values() if "command" in f})
    out += ["", "Commands:"] + [f"- `{c}`" for c in cmds]
    return "\n".join(out)


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "results" / "latency_cpu.json"
    print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
