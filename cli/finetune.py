"""``amoeba finetune``: one-for-all fine-tuning of SMoL adapters on a base model + Stage 1 strategy (resumable).

The recipe's options are generated from ``FinetuneConfig`` / ``SmolConfig`` (their defaults are the only ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cli.common import cli_errors, console, progress
from cli.config_file import with_config_file
from cli.defaults import CHECKPOINT_HELP
from cli.options import build_config, config_options
from core.finetune.config import FinetuneConfig

#: ``FinetuneConfig`` field → help of its option (``adapter.*``: ``SmolConfig``); a field not listed has no option
HELP = {
    "max_steps": "Optimiser steps.",
    "max_minutes": "Stop (with a checkpoint) after this many minutes; rerun to resume.",
    "threads": "torch intra-op threads.",
    "batch_size": "Global batch size (windows per step, split over ranks).",
    "seq_len": "Tokens per window.",
    "lr": "Peak learning rate (warm-up then cosine).",
    "min_lr_ratio": "Final learning rate as a fraction of --lr.",
    "warmup_steps": "Linear warm-up steps (at most --max-steps).",
    "weight_decay": "AdamW weight decay.",
    "grad_clip": "Gradient norm clip.",
    "temperature": "Distillation temperature.",
    "checkpoint_every": "Checkpoint the run every N steps.",
    "eval_every": "Validation loss of the largest/smallest shape every N steps.",
    "eval_batches": "Validation batches per evaluation.",
    "shapes_per_step": "Sandwich size K: largest, smallest and K-2 random shapes.",
    "adapter.mixture": "smol (mixture of LoRAs + router) or lora (one LoRA, ablation).",
    "adapter.num_experts": "LoRA experts per linear.",
    "adapter.rank": "LoRA rank.",
    "adapter.alpha": "LoRA alpha (scale = alpha / rank).",
    "adapter.top_k": "Experts mixed per shape.",
    "adapter.router_noise_std": "Exploration noise on the router logits (training only).",
    "balance": "Loss-magnitude balancing across shapes.",
    "distill": "In-place distillation from the largest shape (off: plain CE everywhere).",
    "base_dtype": "Frozen base dtype: float32 or bfloat16 (int8/int4 need bitsandbytes).",
    "with_calibration": "Also train on the calibration split (off: it stays held out for Stage 1/search).",
    "seed": "Seed of data windows, shapes, router noise and adapter init.",
    "device": "cpu or cuda (under torchrun: each rank's own GPU).",
}


@cli_errors
@with_config_file
@config_options(FinetuneConfig, HELP, rename={"adapter.num_experts": "experts"})
def finetune_cmd(
    out: Annotated[Path, typer.Option(help="Where to write the Amoeba checkpoint directory.")],
    base: Annotated[Optional[Path], typer.Option(help=f"Base model directory (HF format, with tokenizer); {CHECKPOINT_HELP}'s base.")] = None,
    strategy: Annotated[Optional[Path], typer.Option(help="Stage 1 strategy directory (default: <base>/strategy; with the default "
                                                          "--base, the served checkpoint's strategy/).")] = None,
    run_dir: Annotated[Path, typer.Option(help="Work directory: corpus, checkpoints (resume from here).")] = Path("runs/finetune"),
    corpus_dir: Annotated[Optional[Path], typer.Option(help="Prepared corpus (train/validation.txt); default <run-dir>/corpus from the shared data.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Shared data directory (default $AMOEBA_DATA_DIR or ../shared/data).")] = None,
    config: dict[str, Any] | None = None,
) -> None:
    """Fine-tune SMoL adapters so that every shape of the strategy works (sandwich sampling + distillation)."""
    from transformers import AutoTokenizer

    from core.checkpoint import save_checkpoint
    from core.data.corpus import prepare_corpus
    from core.data.paths import data_dir as resolve_data_dir
    from core.finetune.data import finetune_splits
    from core.finetune.distributed import init_from_env
    from core.finetune.recipe import StepInfo, finetune
    from core.smol.assemble import build_trainee, resolve_base_dtype
    from core.strategy.schema import Strategy

    values = dict(config or {})
    values["warmup_steps"] = min(values["warmup_steps"], values["max_steps"])
    cfg = build_config(FinetuneConfig, values)
    base, strategy = _base_and_strategy(base, strategy)
    dtype = resolve_base_dtype(cfg.base_dtype)
    ctx = init_from_env(cfg.device)
    corpus = corpus_dir or run_dir / "corpus"
    if not (corpus / "train.txt").is_file():
        if corpus_dir is not None:
            raise FileNotFoundError(f"corpus directory {corpus} has no train.txt")
        if ctx.is_main:
            console.print("preparing corpus ...")
            prepare_corpus(resolve_data_dir(data_dir) / "corpus" / "gutenberg", corpus)
        ctx.barrier()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    train_tokens, val_tokens = finetune_splits(corpus, tokenizer, cfg.with_calibration)
    trainee = build_trainee(base, Strategy.load(strategy), cfg.adapter, dtype=dtype, seed=cfg.seed, device=cfg.device)
    if ctx.is_main:
        n_train = sum(p.numel() for p in trainee.smol.parameters())
        console.print(f"train tokens: {len(train_tokens):,}  validation tokens: {len(val_tokens):,}  adapter parameters: {n_train:,}")
    if not ctx.is_main:  # other data-parallel ranks: no output, rank 0 writes
        finetune(cfg, trainee, train_tokens, run_dir, val_tokens=val_tokens, ctx=ctx)
        return
    with progress() as bar:
        task = bar.add_task("finetune", total=cfg.max_steps, info="")

        def on_step(s: StepInfo) -> None:
            shapes = " ".join(f"{x.key}:{x.loss:.3f}" for x in s.losses)
            extra = " | val " + " ".join(f"{k}:{v:.3f}" for k, v in s.val.items()) if s.val else ""
            bar.update(task, completed=s.step, info=f"{shapes}{extra} lr {s.lr:.1e} {s.tokens_per_s:.0f} tok/s")

        result = finetune(cfg, trainee, train_tokens, run_dir, val_tokens=val_tokens, on_step=on_step, ctx=ctx)
    if not result.finished:
        console.print(f"stopped at step {result.steps}/{cfg.max_steps}; rerun the same command to resume")
        return
    save_checkpoint(out, trainee, base, cfg.to_dict(), step=result.steps, tokens_seen=result.tokens_seen)
    val = " ".join(f"{k}:{v:.3f}" for k, v in result.val.items())
    console.print(f"saved {out} ({result.steps} steps, {result.tokens_seen:,} tokens, {result.wall_s / 60:.1f} min; val {val})")


def _base_and_strategy(base: Path | None, strategy: Path | None) -> tuple[Path, Path]:
    """``--base`` / ``--strategy``, defaulting to the served checkpoint's base and its strategy."""
    from cli.defaults import base_of, served_checkpoint

    if base is None:
        ckpt = served_checkpoint()
        return base_of(ckpt), strategy if strategy is not None else ckpt / "strategy"
    return base, strategy if strategy is not None else base / "strategy"


def register(app: typer.Typer) -> None:
    """Mount ``amoeba finetune``."""
    app.command("finetune")(finetune_cmd)
