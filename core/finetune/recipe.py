"""The one-for-all fine-tuning recipe: owns the loop, checkpoints every N steps, resumes exactly after a kill."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.data.tokens import random_windows
from core.errors import ConfigError
from core.finetune.config import FinetuneConfig
from core.finetune.distributed import DistContext, shard, wrap
from core.finetune.losses import next_token_ce
from core.finetune.sampler import sandwich_shapes
from core.finetune.state import has_run_state, load_run_state, read_run_meta, save_run_state
from core.finetune.step import ShapeLoss, sandwich_step
from core.pretrain.schedule import cosine_with_warmup
from core.smol.assemble import Trainee

EVAL_STEP_OFFSET = 10_000_000


@dataclass(frozen=True)
class StepInfo:
    """What the recipe reports after each optimiser step (losses per sampled shape, in sampling order)."""

    step: int
    max_steps: int
    losses: tuple[ShapeLoss, ...]
    lr: float
    tokens_per_s: float
    val: dict[str, float] | None = None


@dataclass(frozen=True)
class FinetuneResult:
    steps: int
    tokens_seen: int
    wall_s: float
    finished: bool
    val: dict[str, float] = field(default_factory=dict)


def make_optimizer(trainee: Trainee, cfg: FinetuneConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(list(trainee.smol.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def eval_losses(trainee: Trainee, tokens: np.ndarray, cfg: FinetuneConfig) -> dict[str, float]:
    """Validation next-token CE of the largest and smallest shape on fixed windows (deterministic gate)."""
    el, space = trainee.elastic, trainee.strategy.space
    was_training = el.training
    el.eval()
    out = {}
    for spec in (space.largest, space.smallest):
        el.set_shape(spec)
        losses = []
        for i in range(cfg.eval_batches):
            ids = random_windows(tokens, cfg.batch_size, cfg.seq_len, step=EVAL_STEP_OFFSET + i, seed=cfg.seed).to(cfg.device)
            losses.append(float(next_token_ce(el(ids), ids)))
        out[spec.key] = float(np.mean(losses))
    el.train(was_training)
    return out


def _noise_seed(seed: int, step: int, k: int) -> int:
    return int(np.random.default_rng([seed, step, k, 0x4E]).integers(0, 2**62))


def finetune(
    cfg: FinetuneConfig,
    trainee: Trainee,
    train_tokens: np.ndarray,
    run_dir: Path,
    *,
    val_tokens: np.ndarray | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    ctx: DistContext | None = None,
) -> FinetuneResult:
    """Train ``trainee``'s adapters (or resume from ``run_dir/checkpoint``) up to ``cfg.max_steps``.

    Every step: a global batch of windows (a pure function of (seed, step)), this rank's shard of it, the
    sandwich shapes of the step, backward per shape, grad clip, AdamW with warm-up + cosine. Stops early after
    ``cfg.max_minutes`` with a checkpoint (a later call resumes). Only rank 0 writes and evaluates.
    """
    ctx = ctx or DistContext()
    torch.set_num_threads(cfg.threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    el, smol = trainee.elastic, trainee.smol
    opt = make_optimizer(trainee, cfg)
    step, tokens_seen, wall_before = 0, 0, 0.0
    if has_run_state(run_dir):
        meta = read_run_meta(run_dir)
        saved = FinetuneConfig.from_dict(meta["config"])
        diff = cfg.resume_compatible(saved)
        if diff or meta.get("base_sha256") != trainee.base_sha256:
            why = f"config fields {diff}" if diff else "base weights"
            raise ConfigError(f"run dir {run_dir} holds a run with different {why}; use a new --run-dir")
        load_run_state(run_dir, smol, opt)
        step, tokens_seen, wall_before = int(meta["step"]), int(meta["tokens_seen"]), float(meta["wall_s"])
    forward, sync = wrap(el, ctx)
    el.train()
    t_start = time.perf_counter()
    val: dict[str, float] = {}
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        lr = cfg.lr * cosine_with_warmup(step, max_steps=cfg.max_steps, warmup_steps=cfg.warmup_steps, min_lr_ratio=cfg.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = lr
        ids = shard(random_windows(train_tokens, cfg.batch_size, cfg.seq_len, step=step, seed=cfg.seed), ctx).to(cfg.device)
        shapes = sandwich_shapes(trainee.strategy.space, cfg.shapes_per_step, cfg.seed, step)

        def before_forward(k: int, _step: int = step) -> None:
            smol.source.noise_seed = _noise_seed(cfg.seed, _step, k)

        opt.zero_grad(set_to_none=True)
        losses = sandwich_step(forward, el.set_shape, ids, shapes, distill=cfg.distill, balance=cfg.balance, temperature=cfg.temperature,
                               mean=ctx.mean, sync=sync, before_forward=before_forward)
        torch.nn.utils.clip_grad_norm_(list(smol.parameters()), cfg.grad_clip)
        opt.step()
        step += 1
        tokens_seen += cfg.tokens_per_step
        step_val = None
        if val_tokens is not None and ctx.is_main and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            step_val = val = eval_losses(trainee, val_tokens, cfg)
        elapsed = time.perf_counter() - t_start
        out_of_time = ctx.any(cfg.max_minutes is not None and elapsed > cfg.max_minutes * 60)
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or out_of_time:
            if ctx.is_main:
                meta = {"step": step, "tokens_seen": tokens_seen, "wall_s": wall_before + elapsed, "config": cfg.to_dict(),
                        "base_sha256": trainee.base_sha256}
                save_run_state(run_dir, smol, opt, meta)
            ctx.barrier()
        if on_step is not None and ctx.is_main:
            on_step(StepInfo(step, cfg.max_steps, tuple(losses), lr, cfg.tokens_per_step / (time.perf_counter() - t0), step_val))
        if out_of_time:
            break
    el.eval()
    smol.source.noise_seed = None
    wall = wall_before + time.perf_counter() - t_start
    return FinetuneResult(step, tokens_seen, wall, step >= cfg.max_steps, val)
