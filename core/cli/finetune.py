"""``amoeba finetune``: one-for-all fine-tuning of SMoL adapters on a base model + Stage 1 strategy (resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from core.cli.common import cli_errors, console, progress


@cli_errors
def finetune_cmd(
    base: Annotated[Path, typer.Option(help="Base model directory (HF format, with tokenizer).")],
    strategy: Annotated[Path, typer.Option(help="Stage 1 strategy directory (e.g. <base>/strategy).")],
    out: Annotated[Path, typer.Option(help="Where to write the Amoeba checkpoint directory.")],
    run_dir: Annotated[Path, typer.Option(help="Work directory: corpus, checkpoints (resume from here).")] = Path("runs/finetune"),
    corpus_dir: Annotated[Optional[Path], typer.Option(help="Prepared corpus (train/validation.txt); default <run-dir>/corpus from the shared data.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Shared data directory (default $AMOEBA_DATA_DIR or ../shared/data).")] = None,
    max_steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 300,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (with a checkpoint) after this many minutes; rerun to resume.")] = None,
    threads: Annotated[int, typer.Option(help="torch intra-op threads.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Global batch size (windows per step, split over ranks).")] = 8,
    seq_len: Annotated[int, typer.Option(help="Tokens per window.")] = 256,
    lr: Annotated[float, typer.Option(help="Peak learning rate (warm-up then cosine).")] = 1e-3,
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up steps.")] = 20,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint the run every N steps.")] = 25,
    eval_every: Annotated[int, typer.Option(help="Validation loss of the largest/smallest shape every N steps.")] = 50,
    shapes_per_step: Annotated[int, typer.Option(help="Sandwich size K: largest, smallest and K-2 random shapes.")] = 4,
    mixture: Annotated[str, typer.Option(help="smol (mixture of LoRAs + router) or lora (one LoRA, ablation).")] = "smol",
    experts: Annotated[int, typer.Option(help="LoRA experts per linear.")] = 5,
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    top_k: Annotated[int, typer.Option(help="Experts mixed per shape.")] = 2,
    balance: Annotated[bool, typer.Option(help="Loss-magnitude balancing across shapes.")] = True,
    distill: Annotated[bool, typer.Option(help="In-place distillation from the largest shape (off: plain CE everywhere).")] = True,
    base_dtype: Annotated[str, typer.Option(help="Frozen base dtype: float32 or bfloat16 (int8/int4 need bitsandbytes).")] = "float32",
    with_calibration: Annotated[bool, typer.Option(help="Also train on the calibration split (off: it stays held out for Stage 1/search).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of data windows, shapes, router noise and adapter init.")] = 1234,
    device: Annotated[str, typer.Option(help="cpu or cuda (under torchrun: each rank's own GPU).")] = "cpu",
) -> None:
    """Fine-tune SMoL adapters so that every shape of the strategy works (sandwich sampling + distillation)."""
    from transformers import AutoTokenizer

    from core.checkpoint import save_checkpoint
    from core.data.corpus import prepare_corpus
    from core.data.paths import data_dir as resolve_data_dir
    from core.finetune.config import FinetuneConfig
    from core.finetune.data import finetune_splits
    from core.finetune.distributed import init_from_env
    from core.finetune.recipe import StepInfo, finetune
    from core.smol.assemble import build_trainee, resolve_base_dtype
    from core.smol.config import SmolConfig
    from core.strategy.schema import Strategy

    cfg = FinetuneConfig(
        adapter=SmolConfig(mixture=mixture, num_experts=experts, rank=rank, top_k=top_k),  # type: ignore[arg-type]
        shapes_per_step=shapes_per_step, distill=distill, balance=balance, seq_len=seq_len, batch_size=batch_size, max_steps=max_steps,
        lr=lr, warmup_steps=min(warmup_steps, max_steps), checkpoint_every=checkpoint_every, eval_every=eval_every, seed=seed,
        threads=threads, max_minutes=max_minutes, base_dtype=base_dtype, with_calibration=with_calibration,  # type: ignore[arg-type]
        device=device,
    )
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


def register(app: typer.Typer) -> None:
    """Mount ``amoeba finetune``."""
    app.command("finetune")(finetune_cmd)
