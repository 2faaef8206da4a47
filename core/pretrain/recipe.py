"""The pretraining recipe: owns the loop, checkpoints every N steps, resumes exactly after a kill."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

from core.atomic import atomic_directory
from core.data.tokens import random_windows
from core.pretrain.config import PretrainConfig
from core.pretrain.schedule import cosine_with_warmup


@dataclass(frozen=True)
class StepInfo:
    """What the recipe reports after each optimiser step."""

    step: int
    max_steps: int
    loss: float
    lr: float
    tokens_per_s: float
    val_loss: float | None = None


@dataclass(frozen=True)
class PretrainResult:
    steps: int
    tokens_seen: int
    wall_s: float
    final_val_loss: float
    finished: bool


def build_model(cfg: PretrainConfig) -> LlamaForCausalLM:
    """A freshly initialised stock Llama model (seeded)."""
    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(cfg.dims.to_hf_config())


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    """AdamW with no weight decay on norms (1-D parameters)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, cfg.beta2),
    )


@torch.no_grad()
def eval_loss(model: LlamaForCausalLM, tokens: np.ndarray, cfg: PretrainConfig) -> float:
    """Mean next-token loss on ``cfg.eval_batches`` fixed windows of ``tokens``."""
    model.eval()
    losses = []
    for i in range(cfg.eval_batches):
        batch = random_windows(tokens, cfg.batch_size, cfg.seq_len, step=10_000_000 + i, seed=cfg.seed)
        losses.append(float(model(input_ids=batch, labels=batch).loss))
    model.train()
    return float(np.mean(losses))


def _save_checkpoint(
    run_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, cfg: PretrainConfig, tokens_seen: int, wall_s: float
) -> None:
    """Write ``run_dir/checkpoint`` atomically (``core.atomic``: a crash between its renames leaves ``checkpoint.old``)."""
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight" or not cfg.dims.tie_word_embeddings}
    meta = {"step": step, "tokens_seen": tokens_seen, "wall_s": wall_s, "config": cfg.to_dict()}
    with atomic_directory(run_dir / "checkpoint") as tmp:
        save_file(state, str(tmp / "model.safetensors"))
        torch.save(opt.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(meta, indent=2))


def _load_checkpoint(run_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, cfg: PretrainConfig) -> dict:
    ck = run_dir / "checkpoint"
    if not ck.is_dir() and (run_dir / "checkpoint.old").is_dir():
        ck = run_dir / "checkpoint.old"  # killed between the two renames
    meta = json.loads((ck / "state.json").read_text())
    saved = PretrainConfig.from_dict(meta["config"])
    if saved.dims != cfg.dims or saved.seed != cfg.seed or saved.seq_len != cfg.seq_len or saved.batch_size != cfg.batch_size:
        raise ValueError(f"checkpoint in {run_dir} was made with a different model/data config; use a new run dir")
    model.load_state_dict(load_file(str(ck / "model.safetensors")), strict=False)
    opt.load_state_dict(torch.load(ck / "optimizer.pt", weights_only=True))
    return meta  # type: ignore[no-any-return]


def pretrain(
    cfg: PretrainConfig,
    train_tokens: np.ndarray,
    val_tokens: np.ndarray,
    run_dir: Path,
    on_step: Callable[[StepInfo], None] | None = None,
) -> tuple[LlamaForCausalLM, PretrainResult]:
    """Train from scratch, or resume from ``run_dir/checkpoint`` if it exists with the same config.

    Stops at ``cfg.max_steps`` or after ``cfg.max_minutes`` (checkpointing first, so a later call resumes).
    """
    torch.set_num_threads(cfg.threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg)
    opt = make_optimizer(model, cfg)
    step, tokens_seen, wall_before = 0, 0, 0.0
    if (run_dir / "checkpoint").is_dir() or (run_dir / "checkpoint.old").is_dir():
        meta = _load_checkpoint(run_dir, model, opt, cfg)
        step, tokens_seen, wall_before = meta["step"], meta["tokens_seen"], meta["wall_s"]
    model.train()
    t_start = time.perf_counter()
    val_loss = math.nan
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        mult = cosine_with_warmup(step, max_steps=cfg.max_steps, warmup_steps=cfg.warmup_steps, min_lr_ratio=cfg.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * mult
        batch = random_windows(train_tokens, cfg.batch_size, cfg.seq_len, step=step, seed=cfg.seed)
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        tokens_seen += cfg.tokens_per_step
        vl = None
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            vl = val_loss = eval_loss(model, val_tokens, cfg)
        elapsed = time.perf_counter() - t_start
        out_of_time = cfg.max_minutes is not None and elapsed > cfg.max_minutes * 60
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or out_of_time:
            _save_checkpoint(run_dir, model, opt, step, cfg, tokens_seen, wall_before + elapsed)
        if on_step is not None:
            on_step(StepInfo(step, cfg.max_steps, float(loss.detach()), cfg.lr * mult, cfg.tokens_per_step / (time.perf_counter() - t0), vl))
        if out_of_time:
            break
    if math.isnan(val_loss):
        val_loss = eval_loss(model, val_tokens, cfg)
    wall = wall_before + time.perf_counter() - t_start
    return model, PretrainResult(step, tokens_seen, wall, val_loss, step >= cfg.max_steps)
