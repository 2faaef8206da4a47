"""``amoeba pretrain``: corpus preparation, tokenizer, pretraining, HF export of the base model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cli.common import cli_errors, console, progress
from cli.config_file import with_config_file
from cli.options import config_options
from core.pretrain.config import PretrainConfig

#: ``PretrainConfig`` fields that are options (the others are the recipe's, or ``--tiny``'s)
HELP = {
    "max_steps": "Optimiser steps.",
    "max_minutes": "Stop (with a checkpoint) after this many minutes; rerun to resume.",
    "threads": "torch intra-op threads.",
}


@cli_errors
@with_config_file
@config_options(PretrainConfig, HELP)
def pretrain_cmd(
    out: Annotated[Path, typer.Option(help="Where to write the final HF model directory.")],
    run_dir: Annotated[Path, typer.Option(help="Work directory: corpus, tokenizer, checkpoints (resume from here).")] = Path("runs/pretrain"),
    data_dir: Annotated[Optional[Path], typer.Option(help="Shared data directory (default $AMOEBA_DATA_DIR or ../shared/data).")] = None,
    tiny: Annotated[bool, typer.Option(help="A tiny model and few steps (for tests).")] = False,
    vocab_size: Annotated[int, typer.Option(help="Tokenizer vocabulary size.")] = 8192,
    save_dtype: Annotated[str, typer.Option(help="dtype of the saved weights: float32 or bfloat16.")] = "bfloat16",
    config: dict[str, Any] | None = None,
) -> None:
    """Pretrain the small Llama base model on the Gutenberg train split (resumable)."""
    import torch
    from transformers import AutoTokenizer

    from core.atomic import atomic_directory
    from core.data.corpus import prepare_corpus
    from core.data.paths import data_dir as resolve_data_dir
    from core.data.tokenizer import train_tokenizer
    from core.data.tokens import tokenize_file
    from core.pretrain.config import ModelDims
    from core.pretrain.recipe import StepInfo, pretrain

    opts = dict(config or {})
    max_steps, max_minutes, threads = opts["max_steps"], opts["max_minutes"], opts["threads"]
    if save_dtype not in ("float32", "bfloat16"):
        raise ValueError(f"--save-dtype must be float32 or bfloat16, got {save_dtype!r}")
    corpus_dir = run_dir / "corpus"
    if not (corpus_dir / "split.json").is_file():
        console.print("preparing corpus ...")
        prepare_corpus(resolve_data_dir(data_dir) / "corpus" / "gutenberg", corpus_dir)
    tok_dir = run_dir / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        console.print("training tokenizer ...")
        train_tokenizer(corpus_dir / "train.txt", tok_dir, vocab_size=vocab_size)
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    train_tokens = tokenize_file(corpus_dir / "train.txt", tokenizer)
    val_tokens = tokenize_file(corpus_dir / "validation.txt", tokenizer)
    console.print(f"train tokens: {len(train_tokens):,}  validation tokens: {len(val_tokens):,}")
    if tiny:
        cfg = PretrainConfig(
            dims=ModelDims(
                vocab_size=len(tokenizer), hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=128, max_position_embeddings=128
            ),
            seq_len=64,
            batch_size=4,
            max_steps=max_steps,
            warmup_steps=2,
            checkpoint_every=5,
            eval_every=10,
            eval_batches=2,
            threads=threads,
            max_minutes=max_minutes,
        )
    else:
        cfg = PretrainConfig(dims=ModelDims(vocab_size=len(tokenizer)), max_steps=max_steps, threads=threads, max_minutes=max_minutes)
    with progress() as bar:
        task = bar.add_task("pretrain", total=cfg.max_steps, info="")

        def on_step(s: StepInfo) -> None:
            extra = f" val {s.val_loss:.3f}" if s.val_loss is not None else ""
            bar.update(task, completed=s.step, info=f"loss {s.loss:.3f}{extra} lr {s.lr:.2e} {s.tokens_per_s:.0f} tok/s")

        model, result = pretrain(cfg, train_tokens, val_tokens, run_dir, on_step=on_step)
    summary = {
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "wall_s": round(result.wall_s, 1),
        "final_val_loss": result.final_val_loss,
        "finished": result.finished,
        "config": cfg.to_dict(),
        "split": json.loads((corpus_dir / "split.json").read_text()),
        "train_tokens_available": int(len(train_tokens)),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not result.finished:
        console.print(f"stopped at step {result.steps}/{cfg.max_steps}; rerun the same command to resume")
        return
    with atomic_directory(out) as tmp:
        model.to(getattr(torch, save_dtype)).save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "pretrain_summary.json").write_text(json.dumps(summary, indent=2))
    console.print(f"saved {out} (val loss {result.final_val_loss:.3f}, {result.tokens_seen:,} tokens, {result.wall_s / 60:.1f} min)")


@cli_errors
def prepare_corpus_cmd(
    out: Annotated[Path, typer.Option(help="Directory for train.txt, calibration.txt, validation.txt and split.json.")],
    data_dir: Annotated[Optional[Path], typer.Option(help="Shared data directory (default $AMOEBA_DATA_DIR or ../shared/data).")] = None,
) -> None:
    """Clean the Gutenberg books and split them by book into train / calibration / validation (deterministic)."""
    from core.data.corpus import prepare_corpus
    from core.data.paths import data_dir as resolve_data_dir

    split = prepare_corpus(resolve_data_dir(data_dir) / "corpus" / "gutenberg", out)
    console.print(f"wrote {out}: {len(split.train)} train, {len(split.calibration)} calibration, {len(split.validation)} validation books")


def register(app: typer.Typer) -> None:
    """Mount ``amoeba pretrain`` and ``amoeba prepare-corpus``."""
    app.command("pretrain")(pretrain_cmd)
    app.command("prepare-corpus")(prepare_corpus_cmd)
