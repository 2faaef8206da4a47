"""Shared pieces of ``bench/stage2.py`` and ``bench/stage2_ablation.py``.

- run facts: load average, the command line, atomic JSON;
- evaluation streams (WikiText-2 test, held-out books) cut into evenly spread windows, and per-shape perplexity;
- the held-out text (the prepared corpus' ``validation.txt``, prepared on the fly when not given);
- fine-tuning one checkpoint through the library (resumable), and the ``--tiny`` setup used by the smoke tests.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.atomic import write_json  # noqa: E402
from core.errors import AmoebaError, ConfigError, DataMissingError  # noqa: E402
from core.eval.perplexity import context_window, perplexity_from_ids, read_text_file, tokenize_stream  # noqa: E402
from core.eval.recipe import finite_json as finite  # noqa: E402  (non-finite floats -> None, as amoeba eval's JSON)
from core.eval.wikitext import wikitext2_test_text  # noqa: E402
from core.finetune.config import FinetuneConfig  # noqa: E402
from core.finetune.recipe import FinetuneResult, StepInfo  # noqa: E402
from core.spec import SubnetSpec  # noqa: E402
from core.strategy.schema import Strategy  # noqa: E402

WIKITEXT2 = "wikitext2"
HELDOUT = "heldout"
DATASETS = (WIKITEXT2, HELDOUT)


# ---- run facts ---------------------------------------------------------------------------------------
def load_avg() -> list[float]:
    """The 1/5/15-minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def command_line(script: str, args: Sequence[str]) -> str:
    """``python bench/<script> args...``, shell-quoted so it can be pasted back."""
    return shlex.join(["python", f"bench/{script}", *args])


def save_json(path: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` atomically (temp file + rename); non-finite numbers are stored as ``null``."""
    write_json(path, finite(doc))
    return path


# ---- evaluation --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalSettings:
    """Perplexity protocol: ``max_windows`` windows of ``window`` tokens spread evenly over each stream
    (``None``: every window, the standard WikiText-2 protocol), ``batch_size`` windows per forward."""

    window: int = 256
    max_windows: int | None = 32
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ConfigError(f"--window must be >= 2 tokens, got {self.window}")
        if self.max_windows is not None and self.max_windows < 1:
            raise ConfigError(f"--max-windows must be >= 1, got {self.max_windows}")
        if self.batch_size < 1:
            raise ConfigError(f"--eval-batch-size must be >= 1, got {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_EVAL = EvalSettings()
TINY_EVAL = EvalSettings(window=32, max_windows=4, batch_size=4)


def spread_windows(ids: torch.Tensor, window: int, max_windows: int | None) -> torch.Tensor:
    """``[n * window]``: the tokens of ``n = min(max_windows, available)`` windows spread evenly over ``ids`` ``[N]``.

    Windows are the non-overlapping ``window``-token slices of the stream (incomplete tail dropped); the picked
    ones include the first and the last, so every part of the text (every held-out book) is represented.
    """
    n = ids.numel() // window
    if n == 0:
        raise ConfigError(f"token stream of {ids.numel()} tokens is shorter than one window of {window}")
    if max_windows is None or max_windows >= n:
        return ids[: n * window]
    picks = np.unique(np.linspace(0, n - 1, max_windows).round().astype(np.int64))
    return torch.cat([ids[int(k) * window : (int(k) + 1) * window] for k in picks])


@dataclass(frozen=True)
class Stream:
    """One evaluation text as the windows that get scored (``ids`` ``[windows_used * window]``)."""

    name: str
    source: str
    ids: torch.Tensor
    window: int
    tokens_total: int
    windows_available: int

    @property
    def windows_used(self) -> int:
        return self.ids.numel() // self.window

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "tokens_total": self.tokens_total, "windows_available": self.windows_available,
                "windows_used": self.windows_used, "tokens_scored": self.windows_used * (self.window - 1)}


def load_streams(tokenizer: Any, wikitext_dir: Path, heldout_file: Path, settings: EvalSettings, max_positions: int) -> dict[str, Stream]:
    """WikiText-2 test (rows joined as the HF dataset is) and the held-out text, tokenised as one stream each
    (BOS as the tokenizer adds it, like ``amoeba eval``) and cut to ``settings``' windows."""
    window = context_window(settings.window, max_positions)
    texts = {WIKITEXT2: (wikitext2_test_text(wikitext_dir), str(wikitext_dir)), HELDOUT: (read_text_file(heldout_file), str(heldout_file))}
    out = {}
    for name, (text, source) in texts.items():
        ids = tokenize_stream(tokenizer, text)
        picked = spread_windows(ids, window, settings.max_windows)
        out[name] = Stream(name, source, picked, window, ids.numel(), ids.numel() // window)
    return out


def eval_shape(logits_fn: Callable[[torch.Tensor], torch.Tensor], streams: dict[str, Stream], batch_size: int) -> dict[str, dict[str, Any]]:
    """Perplexity of the active shape on every stream → ``{stream: {ppl, nll, tokens_scored, windows, window_len}}``."""
    return {name: perplexity_from_ids(logits_fn, s.ids, s.window, batch_size=batch_size).to_dict() for name, s in streams.items()}


def eval_shapes(elastic: Any, shapes: Sequence[SubnetSpec], streams: dict[str, Stream], batch_size: int,
                on_shape: Callable[[SubnetSpec], None] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """``eval_shape`` for each shape activated in turn on ``elastic`` (an ``ElasticModel`` in eval mode)."""
    out = {}
    for spec in shapes:
        elastic.set_shape(spec)
        out[spec.key] = eval_shape(elastic, streams, batch_size)
        if on_shape is not None:
            on_shape(spec)
    return out


def heldout_text(heldout: Path | None, data_dir: Path | None, scratch: Path) -> Path:
    """``heldout`` when given (must exist), else ``validation.txt`` of the corpus prepared from the shared data
    into ``scratch/corpus`` (the same deterministic split by book that pretraining and fine-tuning use)."""
    if heldout is not None:
        if not Path(heldout).is_file():
            raise DataMissingError(f"--heldout {heldout} is not a file")
        return Path(heldout)
    from core.data.corpus import prepare_corpus
    from core.data.paths import data_dir as resolve_data_dir

    out = scratch / "corpus"
    if not (out / "validation.txt").is_file():
        prepare_corpus(resolve_data_dir(data_dir) / "corpus" / "gutenberg", out)
    return out / "validation.txt"


def strategy_diff(a: Strategy, b: Strategy) -> list[str]:
    """Names of what differs between two strategies (empty when they are the same data)."""
    ja, jb = a.to_json(), b.to_json()
    diff = [k for k in ja if ja[k] != jb.get(k)]
    if set(a.biases) == set(b.biases) and any(not torch.equal(a.biases[k].float(), b.biases[k].float()) for k in a.biases):
        diff.append("biases")
    return diff


def rel_change(before: float | None, after: float | None) -> float | None:
    """``(after - before) / before`` (negative: better after), ``None`` when either is missing or infinite."""
    if before is None or after is None or not math.isfinite(before) or not math.isfinite(after) or before == 0:
        return None
    return (after - before) / before


# ---- command line (shared by both scripts) -------------------------------------------------------------
def add_common_args(ap: argparse.ArgumentParser, out: Path) -> None:
    """Flags both scripts take: data locations, the perplexity protocol, threads, ``--tiny``, ``--out``."""
    ap.add_argument("--data-dir", type=Path, default=None, help="shared data dir (default $AMOEBA_DATA_DIR or ../shared/data)")
    ap.add_argument("--wikitext-dir", type=Path, default=None, help="dir with wiki.test.raw + test.txt (default <data-dir>/wikitext2)")
    ap.add_argument("--window", type=int, default=None, help=f"tokens per window (default {DEFAULT_EVAL.window}; --tiny {TINY_EVAL.window})")
    ap.add_argument("--max-windows", type=int, default=None,
                    help=f"windows per dataset, spread evenly; 0 = all (default {DEFAULT_EVAL.max_windows}; --tiny {TINY_EVAL.max_windows})")
    ap.add_argument("--eval-batch-size", type=int, default=None, help=f"windows per forward (default {DEFAULT_EVAL.batch_size})")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--tiny", action="store_true", help="tiny random model + naive strategy + tiny texts (smoke test, seconds)")
    ap.add_argument("--out", type=Path, default=out, help="result JSON (written atomically)")


def eval_settings(a: argparse.Namespace) -> EvalSettings:
    """``EvalSettings`` from the flags of ``add_common_args`` (unset ones: the default or ``--tiny`` preset)."""
    d = TINY_EVAL if a.tiny else DEFAULT_EVAL
    max_windows = d.max_windows if a.max_windows is None else (a.max_windows or None)
    return EvalSettings(window=a.window or d.window, max_windows=max_windows, batch_size=a.eval_batch_size or d.batch_size)


def eval_args(settings: EvalSettings) -> list[str]:
    """The flags that reproduce ``settings``."""
    return ["--window", str(settings.window), "--max-windows", str(settings.max_windows or 0), "--eval-batch-size", str(settings.batch_size)]


def set_threads(threads: int) -> None:
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def run_main(a: argparse.Namespace, run: Callable[[Path], dict[str, Any]], default_work: Path | None) -> dict[str, Any] | None:
    """Run ``run(work_dir)`` (``--work-dir``, else ``default_work``, else a temp dir) and write its JSON to ``a.out``.

    Domain errors print one ``error:`` line to stderr and give ``None``; nothing is written then.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no weight-loading bars between ours
    try:
        with tempfile.TemporaryDirectory(prefix="amoeba-bench-") as tmp:
            doc = run(a.work_dir or default_work or Path(tmp))
        save_json(a.out, doc)
    except (AmoebaError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    return doc


def advance_bar(bar: Any, name: str, total: int) -> Callable[[SubnetSpec], None]:
    """A new task on the rich ``bar`` and a callback that advances it by one shape."""
    task = bar.add_task(name, total=total, info="")

    def advance(spec: SubnetSpec) -> None:
        bar.update(task, advance=1, info=spec.key)

    return advance


# ---- fine-tuning one checkpoint -----------------------------------------------------------------------
def train_checkpoint(cfg: FinetuneConfig, base_dir: Path, strategy_dir: Path, corpus_dir: Path, run_dir: Path, out_dir: Path,
                     on_step: Callable[[StepInfo], None] | None = None) -> FinetuneResult:
    """What ``amoeba finetune`` does, through the library: train (resuming from ``run_dir``) and, when the run
    finished, write the checkpoint to ``out_dir``. The train split of ``corpus_dir`` is the data; the tokenizer
    is the base directory's."""
    from core.checkpoint import save_checkpoint
    from core.eval.target import load_tokenizer
    from core.finetune.data import finetune_splits
    from core.finetune.recipe import finetune
    from core.smol.assemble import build_trainee, resolve_base_dtype

    if not (Path(corpus_dir) / "train.txt").is_file():
        raise DataMissingError(f"corpus directory {corpus_dir} has no train.txt")
    tokenizer = load_tokenizer(base_dir)
    train_tokens, val_tokens = finetune_splits(corpus_dir, tokenizer, cfg.with_calibration)
    trainee = build_trainee(base_dir, Strategy.load(strategy_dir), cfg.adapter, dtype=resolve_base_dtype(cfg.base_dtype), seed=cfg.seed,
                            device=cfg.device)
    result = finetune(cfg, trainee, train_tokens, run_dir, val_tokens=val_tokens, on_step=on_step)
    if result.finished:
        save_checkpoint(out_dir, trainee, base_dir, cfg.to_dict(), step=result.steps, tokens_seen=result.tokens_seen)
    return result


# ---- --tiny ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TinySetup:
    """A tiny random Llama with a tokenizer and a naive ``strategy/``, a prepared corpus and a WikiText-2-format dir."""

    base: Path
    corpus: Path
    wikitext: Path

    @property
    def strategy(self) -> Path:
        return self.base / "strategy"


_WORDS = ("the fox dog cat bird runs jumps sleeps sings over under near far quick lazy small big red old young happy "
          "river hill house tree garden morning evening story king queen child walks sees finds loves").split()


def _sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), size=int(rng.integers(5, 12)))).capitalize() + "." for _ in range(n)]


def _write_wikitext(out: Path, seed: int) -> None:
    """``wiki.test.raw`` (non-empty rows, CRLF) and ``test.txt`` (the row layout with blank rows), as in the shared data."""
    rows: list[str] = []
    for k, s in enumerate(_sentences(120, seed)):
        if k % 8 == 0:
            rows += ["", f" = Section {k // 8} = ", ""]
        rows.append(" " + s + " " + s.lower())
    out.mkdir(parents=True, exist_ok=True)
    (out / "wiki.test.raw").write_bytes("\r\n".join(r for r in rows if r.strip()).encode() + b"\r\n")
    (out / "test.txt").write_text("\n".join(rows) + "\n")


def make_tiny_setup(root: Path, seed: int = 0) -> TinySetup:
    """Create (once; reused when ``root`` already holds it) the tiny model, tokenizer, strategy and texts."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from core.data.tokenizer import train_tokenizer
    from core.model.loader import ModelInfo, weights_sha256
    from core.strategy.schema import naive_strategy

    root = Path(root)
    setup = TinySetup(root / "base", root / "corpus", root / "wikitext2")
    done = root / ".tiny-ready"
    if done.is_file():
        return setup
    setup.corpus.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(("train", "calibration", "validation")):
        (setup.corpus / f"{part}.txt").write_text("\n".join(_sentences(600 if part == "train" else 150, seed + k)) + "\n")
    _write_wikitext(setup.wikitext, seed + 7)
    tok_dir = train_tokenizer(setup.corpus / "train.txt", root / "tokenizer", vocab_size=400)
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(str(setup.base))
    tok.save_pretrained(str(setup.base))
    info = ModelInfo.from_config(AutoConfig.from_pretrained(str(setup.base)))
    naive_strategy(info, weights_sha256(setup.base), min_layers=2, widths=(1.0, 0.75, 0.5)).save(setup.strategy)
    done.write_text("ok\n")
    return setup
