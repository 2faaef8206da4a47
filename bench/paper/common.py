"""Shared pieces of the paper-reproduction scripts: arguments, run record, evaluation suite, latency, JSON.

The scripts (``table3.py``, ``table1.py``, ``figure3.py``) are recipes; everything here is a small helper.
Evaluation: WikiText-2 (raw test, ``"\\n\\n".join`` of the rows) and held-out-book perplexity (the corpus
``validation.txt``: books never trained on) over non-overlapping windows, plus multiple-choice tasks
(lm-eval-style acc / acc_norm on a seeded subset). Latency: the ``torch`` profiler plugin on config-only shapes
(random weights of the exact architecture; latency does not depend on the weight values).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common_eval import spread_windows  # noqa: E402
from core.atomic import write_json  # noqa: E402
from core.errors import AmoebaError, ConfigError, DataMissingError  # noqa: E402
from core.eval.perplexity import LogitsFn, context_window, perplexity_from_ids, tokenize_stream  # noqa: E402
from core.eval.recipe import finite_json  # noqa: E402
from core.spec import SubnetSpec, parse_widths  # noqa: E402
from core.strategy.schema import Strategy  # noqa: E402

DEFAULT_MODEL = ROOT / "models" / "amoeba-tiny-base"
DEFAULT_CHECKPOINT = ROOT / "models" / "amoeba-tiny-smol"
DEFAULT_CORPUS = ROOT / "runs" / "pretrain" / "corpus"
DEFAULT_WORK = ROOT / "var" / "paper"
RESULTS = ROOT / "bench" / "results"
DEFAULT_TASKS = "piqa,hellaswag,winogrande,arc_easy,arc_challenge,boolq,openbookqa"
#: width ladder of the width baselines: 1 down to 1/4 in steps of 1/16
FINE_WIDTHS = ",".join(f"{k}/16" for k in range(16, 3, -1))


# ---- arguments and run record -------------------------------------------------------------------------------


def add_common_args(ap: argparse.ArgumentParser) -> None:
    """Paths and cost knobs every script takes."""
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="base model directory (HF, with tokenizer)")
    ap.add_argument("--data-dir", type=Path, default=None, help="shared data (default $AMOEBA_DATA_DIR or ../shared/data)")
    ap.add_argument("--corpus-dir", type=Path, default=DEFAULT_CORPUS, help="prepared corpus: train/calibration/validation.txt")
    ap.add_argument("--calib-text", type=Path, default=None, help="calibration text (default: calibration.txt of the model, else of the corpus)")
    ap.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="token caches (never written next to the inputs)")
    ap.add_argument("--calib-window", type=int, default=256, help="calibration window (tokens)")
    ap.add_argument("--calib-windows", type=int, default=32, help="calibration windows (the baselines' and the DP's data)")
    ap.add_argument("--eval-window", type=int, default=None, help="perplexity window (default: the model context)")
    ap.add_argument("--max-windows", type=int, default=64, help="perplexity windows per text (0 = all)")
    ap.add_argument("--tasks", default=DEFAULT_TASKS, help="multiple-choice tasks ('' = none)")
    ap.add_argument("--limit", type=int, default=200, help="items per task (seeded subset; 0 = all)")
    ap.add_argument("--batch-size", type=int, default=8, help="evaluation / calibration batch size")
    ap.add_argument("--seed", type=int, default=1234, help="seed of task subsets, LoRA init and training windows")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--tiny", action="store_true", help="smoke-test mode: smallest settings (overrides the cost knobs)")


def apply_tiny(args: argparse.Namespace, **extra: Any) -> None:
    """``--tiny``: a few windows and items, so a run on a tiny model takes seconds."""
    if not args.tiny:
        return
    tiny = {"calib_window": 16, "calib_windows": 4, "eval_window": 32, "max_windows": 2, "limit": 3, "batch_size": 4}
    for k, v in {**tiny, **extra}.items():
        setattr(args, k, v)


@dataclass
class RunRecord:
    """Command line, wall time and load average of one script run (stored in every result JSON)."""

    command: str
    started: float = field(default_factory=time.time)
    load_avg_before: list[float] = field(default_factory=lambda: [round(x, 2) for x in os.getloadavg()])

    @classmethod
    def start(cls, script: str, argv: Sequence[str] | None) -> RunRecord:
        args = list(sys.argv[1:] if argv is None else argv)
        return cls(shlex.join(["python", f"bench/paper/{script}", *args]))

    def finish(self) -> dict[str, Any]:
        return {"command": self.command, "wall_s": round(time.time() - self.started, 1), "load_avg_before": self.load_avg_before,
                "load_avg_after": [round(x, 2) for x in os.getloadavg()], "torch_threads": torch.get_num_threads(),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def save_json(path: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` atomically (non-finite numbers become ``null``)."""
    write_json(path, finite_json(doc))
    return path


class ResumableRows:
    """Finished rows keyed by ``row["key"]`` plus ``done`` markers, persisted to ``path`` (under ``field``) after
    every change. A rerun with equal ``header["settings"]`` resumes (finished rows are kept; entries of ``field``
    without a key are not rows); other settings or ``fresh`` start over.
    """

    def __init__(self, path: Path, header: dict[str, Any], fresh: bool, field: str = "rows") -> None:
        self.path, self.header, self.field = path, header, field
        self.rows: dict[str, dict[str, Any]] = {}
        self.done: list[str] = []
        if path.is_file() and not fresh:
            old = json.loads(path.read_text())
            if old.get("settings") == json.loads(json.dumps(finite_json(header["settings"]))):
                self.rows = {r["key"]: r for r in old.get(field, []) if "key" in r}
                self.done = list(old.get("done", []))

    def have(self, key: str) -> bool:
        return key in self.rows

    def add(self, row: dict[str, Any]) -> None:
        self.rows[row["key"]] = row
        self._save()

    def mark_done(self, marker: str) -> None:
        if marker not in self.done:
            self.done.append(marker)
            self._save()

    def _save(self) -> None:
        save_json(self.path, {**self.header, self.field: list(self.rows.values()), "done": self.done})


def run_script(main: Callable[[Sequence[str] | None], Any]) -> None:
    """Entry point: domain errors and missing files become one line on stderr and exit code 2."""
    try:
        main(None)
    except (AmoebaError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def run_recipe(script: str, parse: Callable[[Sequence[str] | None], argparse.Namespace],
               recipe: Callable[[argparse.Namespace, RunRecord], dict[str, Any]], argv: Sequence[str] | None) -> dict[str, Any]:
    """Parse, set the torch threads, run ``recipe`` and write its document to ``args.out``."""
    args = parse(argv)
    torch.set_num_threads(args.threads)
    doc = recipe(args, RunRecord.start(script, argv))
    save_json(args.out, doc)
    return doc


def require_matplotlib() -> None:
    """Fail before any work when the PNG cannot be written."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("matplotlib is not installed (needed for the PNG): pip install matplotlib")


def log(message: str) -> None:
    """A progress line on stderr (scripts are entry points; the results go to the JSON)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def widths_arg(text: str) -> tuple[float, ...]:
    return parse_widths(text)


def floats_arg(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"expected comma-separated numbers, got {text!r}") from None


def names_arg(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


# ---- inputs -------------------------------------------------------------------------------------------------


@dataclass
class Models:
    """The base model (dense HF model, its info, weights sha256, tokenizer) and, when asked, the checkpoint."""

    hf: Any
    info: Any
    sha256: str
    tokenizer: Any
    checkpoint: Any = None


def open_models(args: argparse.Namespace, *, checkpoint: bool) -> Models:
    """Load ``--model`` (and ``--checkpoint``, which must have been made for exactly these weights)."""
    from core.eval.target import load_tokenizer
    from core.model.loader import load_base_model, weights_sha256

    torch.manual_seed(args.seed)
    tokenizer = load_tokenizer(args.model)
    sha = weights_sha256(args.model)
    ck = None
    if checkpoint:
        from core.checkpoint import open_checkpoint

        ck = open_checkpoint(args.checkpoint, base_dir=args.model)
    hf, info = load_base_model(args.model)
    if ck is not None and (ck.elastic.info != info or ck.strategy.model_sha256 != sha):
        raise ConfigError(f"checkpoint {args.checkpoint} was made for other base weights than {args.model}")
    return Models(hf, info, sha, tokenizer, ck)


def methods_arg(text: str, kind: str | None = None) -> list[str]:
    """Baseline names (each must be registered, and of ``kind`` when given)."""
    from core.baselines import baseline_spec

    names = names_arg(text)
    bad = [n for n in names if kind is not None and baseline_spec(n).kind != kind]
    if bad:
        raise ConfigError(f"only {kind} methods fit here; {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not")
    return names


def resolve_calib_text(args: argparse.Namespace, *dirs: Path) -> Path:
    """``--calib-text``, else ``calibration.txt`` in ``dirs`` (model, checkpoint) and then the corpus."""
    if args.calib_text is not None:
        if not Path(args.calib_text).is_file():
            raise DataMissingError(f"calibration text not found: {args.calib_text}")
        return Path(args.calib_text)
    for d in (*dirs, args.corpus_dir):
        if (Path(d) / "calibration.txt").is_file():
            return Path(d) / "calibration.txt"
    raise DataMissingError(f"no calibration.txt in {', '.join(str(d) for d in (*dirs, args.corpus_dir))}; pass --calib-text FILE")


def file_tokens(path: Path, tokenizer: Any, work_dir: Path) -> np.ndarray:
    """Token ids of a text file (cached under ``work_dir``, never next to the input)."""
    from core.data.tokens import tokenize_file

    return tokenize_file(Path(path), tokenizer, cache_dir=Path(work_dir) / "tokens")


def calib_ids(args: argparse.Namespace, tokenizer: Any, *dirs: Path) -> tuple[np.ndarray, Path]:
    """The calibration token stream and its file."""
    path = resolve_calib_text(args, *dirs)
    return file_tokens(path, tokenizer, args.work_dir), path


# ---- evaluation ---------------------------------------------------------------------------------------------

#: the settings that decide an evaluation's numbers (rows of other scripts are reused only when all are equal)
EVAL_KEYS = ("model_sha256", "eval_window", "max_windows", "tasks", "limit", "seed", "batch_size")


def eval_settings(args: argparse.Namespace, sha: str) -> dict[str, Any]:
    """The ``EVAL_KEYS`` of this run."""
    return {"model_sha256": sha, "eval_window": args.eval_window, "max_windows": args.max_windows, "tasks": args.tasks,
            "limit": args.limit, "seed": args.seed, "batch_size": args.batch_size}


def reusable_evals(paths: Sequence[Path], settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """fingerprint → evaluation from other scripts' rows files (Table 3, DP variants) scored with the same
    ``EVAL_KEYS``; ``ConfigError`` naming the keys that differ otherwise."""
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not Path(path).is_file():
            raise DataMissingError(f"rows file not found: {path}")
        doc = json.loads(Path(path).read_text())
        theirs = doc.get("settings", {})
        diff = [k for k in EVAL_KEYS if theirs.get(k) != settings.get(k)]
        if diff:
            raise ConfigError(f"{path} was evaluated with other settings ({', '.join(diff)} differ)")
        out |= {r["fingerprint"]: r["eval"] for r in doc.get("rows", []) if "fingerprint" in r}
    return out



@dataclass
class EvalSuite:
    """Perplexity windows and selected multiple-choice items, loaded once and applied to many models.

    ``streams[name]`` holds the scored windows back to back: ``max_windows`` windows of ``window`` tokens spread
    evenly over the whole text (first and last included; ``bench.common_eval.spread_windows``, as the Stage 2
    benches), so every held-out book is represented; ``None`` = every window (the standard WikiText-2 protocol).
    """

    streams: dict[str, torch.Tensor]
    items: dict[str, list[Any]]
    tokenizer: Any
    window: int
    max_windows: int | None
    max_len: int
    batch_size: int
    tokens_total: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, args: argparse.Namespace, tokenizer: Any, max_positions: int) -> EvalSuite:
        from core.data.paths import data_dir
        from core.eval.tasks import load_task, select_items
        from core.eval.wikitext import wikitext2_test_text

        root = data_dir(args.data_dir)
        book = Path(args.corpus_dir) / "validation.txt"
        if not book.is_file():
            raise DataMissingError(f"held-out books not found: {book} (prepare the corpus or pass --corpus-dir)")
        whole = {"wikitext2": tokenize_stream(tokenizer, wikitext2_test_text(root / "wikitext2")),
                 "book": tokenize_stream(tokenizer, book.read_text(encoding="utf-8"))}
        limit = args.limit or None
        items = {t: select_items(load_task(t, root), limit, args.seed) for t in names_arg(args.tasks)}
        window = context_window(args.eval_window, max_positions)
        max_windows = args.max_windows or None
        streams = {k: spread_windows(v, window, max_windows) for k, v in whole.items()}
        return cls(streams, items, tokenizer, window, max_windows, max_positions, args.batch_size, {k: int(v.numel()) for k, v in whole.items()})

    def describe(self) -> dict[str, Any]:
        return {"window": self.window, "max_windows": self.max_windows, "windows": "spread evenly over each text",
                "stream_tokens": self.tokens_total, "scored_windows": {k: int(v.numel()) // self.window for k, v in self.streams.items()},
                "tasks": {k: len(v) for k, v in self.items.items()}}

    def perplexities(self, logits_fn: LogitsFn) -> dict[str, Any]:
        """Perplexity of every stream: ``ppl``, ``nll`` ± ``nll_stderr`` (over windows) and every window's NLL."""
        out: dict[str, Any] = {}
        for name, ids in self.streams.items():
            r = perplexity_from_ids(logits_fn, ids, self.window, batch_size=self.batch_size)
            out[name] = {"ppl": r.ppl, "nll": r.nll, "nll_stderr": r.nll_stderr, "tokens_scored": r.tokens_scored, "window_nll": list(r.window_nll)}
        return out

    def evaluate(self, logits_fn: LogitsFn, *, tasks: bool = True) -> dict[str, Any]:
        """Perplexity of every stream (``perplexities``) and (``tasks``) every task's acc / acc_norm, with the mean
        over tasks and its standard error."""
        from core.eval.multiple_choice import score_items, summarize

        t0 = time.perf_counter()
        out = self.perplexities(logits_fn)
        if tasks and self.items:
            res, hits = {}, {}
            for t, its in self.items.items():
                scores = score_items(logits_fn, self.tokenizer, its, self.max_len, batch_size=self.batch_size)
                res[t] = summarize(t, scores, its)
                hits[t] = "".join("1" if s.pred_norm == s.gold else "0" for s in scores)  # per item, for paired comparisons
            out["tasks"] = {t: {"acc": r.acc, "acc_norm": r.acc_norm, "acc_norm_stderr": r.acc_norm_stderr, "n": r.n, "chance": r.chance,
                                "hits_norm": hits[t]} for t, r in res.items()}
            out["mc_mean_acc_norm"] = float(np.mean([r.acc_norm for r in res.values()]))
            # tasks are independent samples: se(mean) = sqrt(sum se_t^2) / T
            out["mc_mean_acc_norm_stderr"] = float(np.sqrt(sum(r.acc_norm_stderr**2 for r in res.values())) / len(res))
            out["mc_mean_chance"] = float(np.mean([r.chance for r in res.values()]))
        out["seconds"] = round(time.perf_counter() - t0, 2)
        return out


def calibration_ppl(logits_fn: LogitsFn, ids: np.ndarray, window: int, num_windows: int, batch_size: int) -> float:
    """Perplexity on the calibration windows (the data the methods selected on)."""
    t = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    return perplexity_from_ids(logits_fn, t, window, batch_size=batch_size, max_windows=num_windows).ppl


def subnet_fingerprint(strategy: Strategy, spec: SubnetSpec) -> str:
    """Identity of the function a (strategy, shape) computes on the plain base: kept layers, units, biases."""
    s = strategy.space.validate(spec)
    layers = strategy.kept_layers(s.num_layers)
    h = hashlib.sha256(strategy.model_sha256.encode())
    for i in layers:
        parts = [i, strategy.attn_units(s.attn_width, i), strategy.ffn_channels(s.ffn_width, i)]
        h.update(json.dumps(parts).encode())
        for module, w in (("attn", s.attn_width), ("ffn", s.ffn_width)):
            b = strategy.bias(module, w, i)
            h.update(b"-" if b is None else b.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def save_png(fig: Any, path: Path) -> Path:
    """Write a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    from core.atomic import atomic_open

    fig.tight_layout()
    try:
        with atomic_open(path) as fh:
            fig.savefig(fh, format="png", dpi=120)
    finally:
        plt.close(fig)
    return path


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---- latency ------------------------------------------------------------------------------------------------


class LatencyBench:
    """Measured latency of shapes built from the base config on one CPU flow (``torch``, ``onnxruntime``, ...:
    ``profilers.registry``); one measurement per architecture."""

    def __init__(self, model_dir: Path, workload: str, *, repetitions: int, warmup: int, threads: int = 1, engine: str = "torch") -> None:
        from profilers.base import MeasureSettings
        from profilers.registry import get_profiler
        from profilers.workload import Workload

        self.model_dir = Path(model_dir)
        self.workload = Workload.parse(workload)
        self.engine = engine
        self.profiler = get_profiler(engine, MeasureSettings(warmup=warmup, repetitions=repetitions, threads=threads))
        reason = self.profiler.unavailable_reason()
        if reason:
            raise ConfigError(f"{engine} profiler unavailable: {reason}")
        self.rows: dict[str, dict[str, Any]] = {}

    def settings(self) -> dict[str, Any]:
        s = self.profiler.settings
        return {"engine": self.engine, "device": "cpu", "workload": self.workload.key, "repetitions": s.repetitions, "warmup": s.warmup, "threads": s.threads}

    @staticmethod
    def parse_arch(arch: str) -> tuple[SubnetSpec, tuple[str, ...]]:
        """``L12-a0.75-f0.75+attn_bias`` → (shape, bias modules): the inverse of the keys ``measure`` stores."""
        shape, *mods = arch.split("+")
        bad = [m for m in mods if m not in ("attn_bias", "ffn_bias")]
        if bad:
            raise ConfigError(f"bad architecture key {arch!r}: unknown part(s) {bad}")
        return SubnetSpec.parse(shape), tuple(m.removesuffix("_bias") for m in mods)

    def measure_interleaved(self, archs: Sequence[str], rounds: int) -> dict[str, dict[str, Any]]:
        """Re-measure ``archs`` side by side: ``rounds`` rounds, each measuring every architecture once (in an order
        rotated per round, so drift in machine load spreads over all of them); per architecture the median over
        the rounds of each round's median. Replaces ``self.rows`` for these keys and returns them."""
        if rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {rounds}")
        parsed = {a: self.parse_arch(a) for a in archs}
        samples: dict[str, list[dict[str, Any]]] = {a: [] for a in archs}
        order = list(archs)
        for r in range(rounds):
            k = r % max(1, len(order))
            for a in order[k:] + order[:k]:
                samples[a].append(self._measure_once(a, *parsed[a]))
        for a, got in samples.items():
            tpots = [g["tpot_ms"] for g in got]
            self.rows[a] = self._row(a, float(np.median(tpots)), float(np.percentile(tpots, 90)), float(np.median([g["ttft_ms"] for g in got])),
                                     any(g["busy"] for g in got)) | {"rounds": len(got)}
        return {a: self.rows[a] for a in archs}

    def _row(self, arch: str, tpot_ms: float, tpot_ms_p90: float, ttft_ms: float, busy: bool) -> dict[str, Any]:
        return {"arch": arch, "tpot_ms": tpot_ms, "tpot_ms_p90": tpot_ms_p90, "ttft_ms": ttft_ms,
                "e2e_ms": ttft_ms + (self.workload.gen_len - 1) * tpot_ms, "busy": busy}

    def _measure_once(self, arch: str, spec: SubnetSpec, mods: Sequence[str]) -> dict[str, Any]:
        from profilers.source import ModelSource

        row = self.profiler.measure(ModelSource.open(self.model_dir, bias_modules=mods), spec, self.workload)
        return self._row(arch, row.tpot_ms.median, row.tpot_ms.p90, row.ttft_ms.median, row.busy)

    def measure(self, spec: SubnetSpec, bias_modules: Sequence[str]) -> dict[str, Any]:
        """tpot/ttft medians (ms) of ``spec``; ``bias_modules``: the modules with compensation biases (``attn``,
        ``ffn``; a bias exists only where that module is narrowed, as in an export)."""
        mods = tuple(m for m in ("attn", "ffn") if m in bias_modules and (spec.attn_width if m == "attn" else spec.ffn_width) < 1)
        key = spec.key + "".join(f"+{m}_bias" for m in mods)
        if key not in self.rows:
            self.rows[key] = self._measure_once(key, spec, mods)
        return self.rows[key]
