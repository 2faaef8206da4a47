"""Does Stage 1's bias compensation help, per module? → ``bench/results/bias_compensation.json``.

The same strategy (same kept units) is evaluated with compensation biases on both modules, attention only,
MLP only, and none, on held-out text (never the calibration text the biases came from). This decides the
default of ``amoeba calibrate --bias`` and therefore the exported architecture (DESIGN §4: attention-narrowed
shapes with an o_proj bias must be exported as Granite; without it they are plain Mistral).

Usage: python bench/bias_compensation.py [--model models/amoeba-tiny-base] [--heldout FILE] [--max-windows 32]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data.corpus import prepare_corpus  # noqa: E402
from core.data.paths import data_dir  # noqa: E402
from core.elastic.model import ElasticModel  # noqa: E402
from core.eval.perplexity import perplexity_from_ids, tokenize_stream  # noqa: E402
from core.model.loader import load_base_model  # noqa: E402
from core.strategy.schema import Strategy  # noqa: E402

VARIANTS = {"both": ("attn", "ffn"), "attn_only": ("attn",), "ffn_only": ("ffn",), "none": ()}
SHAPES = ["L12-a0.625-f1", "L12-a1-f0.625", "L12-a0.75-f0.75", "L12-a0.625-f0.625", "L9-a0.75-f0.75", "L6-a0.625-f0.625"]


def with_biases(st: Strategy, modules: tuple[str, ...]) -> Strategy:
    """A copy of ``st`` keeping only the compensation biases of ``modules``."""
    out = copy.copy(st)
    out.biases = {k: v for k, v in st.biases.items() if k.split(".")[0] in modules}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "amoeba-tiny-base")
    ap.add_argument("--heldout", type=Path, default=None, help="held-out text (default: the corpus validation split, prepared from the shared data)")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--max-windows", type=int, default=32)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bias_compensation.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0, load0 = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        heldout = a.heldout
        if heldout is None:
            prepare_corpus(data_dir() / "corpus" / "gutenberg", Path(tmp))
            heldout = Path(tmp) / "validation.txt"
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(a.model))
        ids = tokenize_stream(tok, heldout.read_text(encoding="utf-8"))
    st = Strategy.load(a.model / "strategy")
    hf, _ = load_base_model(a.model)
    rows: dict[str, dict[str, float]] = {}
    for name, modules in VARIANTS.items():
        em = ElasticModel(hf, with_biases(st, modules))
        for key in SHAPES:
            em.set_shape(key)
            with torch.no_grad():
                r = perplexity_from_ids(em, ids, a.window, max_windows=a.max_windows)
            rows.setdefault(key, {})[name] = round(r.ppl, 3)
            print(f"{key:20s} {name:10s} ppl {r.ppl:.3f}", flush=True)
    summary = {v: sum(1 for k in SHAPES if rows[k][v] == min(rows[k].values())) for v in VARIANTS}
    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "model": str(a.model), "heldout": str(a.heldout or "corpus validation split"), "window": a.window, "max_windows": a.max_windows,
        "tokens_scored": r.tokens_scored, "ppl": rows, "best_count": summary,
        "wall_s": round(time.perf_counter() - t0, 1), "load_avg_before": [round(x, 2) for x in load0],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
