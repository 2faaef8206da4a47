"""Per-shape fine-tuning: one LoRA trained on one fixed shape (the baselines' recovery and AmoebaLLM†).

The same pieces as the one-for-all recipe (``core.finetune``): a single LoRA per targeted linear
(``SmolConfig(mixture="lora")``), frozen base, windows that are a pure function of (seed, step), warm-up +
cosine, AdamW, gradient clipping, and ``sandwich_step`` with a one-shape list (= next-token CE of that shape).
No resume: one run is short (minutes); the caller evaluates the adapted shape, then ``detach``es the adapters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from core.data.tokens import random_windows
from core.elastic.model import TARGETS, ElasticModel
from core.errors import ConfigError
from core.finetune.step import sandwich_step
from core.pretrain.schedule import cosine_with_warmup
from core.smol.assemble import freeze_base
from core.smol.attach import SmolAdapters, attach_smol
from core.smol.config import SmolConfig
from core.spec import SubnetSpec


@dataclass(frozen=True)
class ShapeLoraConfig:
    """Optimisation of one shape's LoRA; ``tokens = steps × batch_size × seq_len``."""

    steps: int
    batch_size: int = 8
    seq_len: int = 256
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    grad_clip: float = 1.0
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = field(default=TARGETS)
    seed: int = 1234

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        for name in ("steps", "batch_size", "rank"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise ConfigError(f"seq_len must be >= 2, got {self.seq_len}")
        if self.warmup_steps < 0 or self.lr <= 0:
            raise ConfigError(f"need warmup_steps >= 0 and lr > 0, got {self.warmup_steps}, {self.lr}")

    @property
    def tokens(self) -> int:
        return self.steps * self.batch_size * self.seq_len

    @property
    def adapter(self) -> SmolConfig:
        return SmolConfig(mixture="lora", rank=self.rank, alpha=self.alpha, targets=self.targets)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["targets"] = list(self.targets)
        return d


@dataclass(frozen=True)
class ShapeLoraResult:
    """What one run did: steps, tokens, wall seconds, and the mean training loss of its first / last tenth."""

    shape: str
    steps: int
    tokens_seen: int
    wall_s: float
    loss_start: float
    loss_end: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def finetune_shape(
    elastic: ElasticModel,
    spec: SubnetSpec,
    train_tokens: np.ndarray,
    cfg: ShapeLoraConfig,
    *,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[SmolAdapters, ShapeLoraResult]:
    """Attach a fresh LoRA to ``elastic`` and train it on ``spec`` alone; returns the adapters (attached, eval mode).

    ``elastic`` must carry no adapters; its base parameters end up frozen. ``on_step(step, loss)`` after each step.
    On an error the adapters are detached again before it propagates.
    """
    spec = elastic.set_shape(spec)
    adapters = attach_smol(elastic, cfg.adapter, seed=cfg.seed)
    freeze_base(elastic, adapters)
    params = list(adapters.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    dev = elastic.hf.lm_head.weight.device
    losses: list[float] = []
    elastic.train()
    t0 = time.perf_counter()
    try:
        for step in range(cfg.steps):
            lr = cfg.lr * cosine_with_warmup(step, max_steps=cfg.steps, warmup_steps=min(cfg.warmup_steps, cfg.steps), min_lr_ratio=cfg.min_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = lr
            ids = random_windows(train_tokens, cfg.batch_size, cfg.seq_len, step=step, seed=cfg.seed).to(dev)
            opt.zero_grad(set_to_none=True)
            (loss,) = sandwich_step(elastic, elastic.set_shape, ids, [spec], distill=False, balance=False)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            losses.append(loss.loss)
            if on_step is not None:
                on_step(step + 1, loss.loss)
    except BaseException:
        adapters.detach(elastic)
        raise
    finally:
        elastic.eval()
    tenth = max(1, len(losses) // 10)
    result = ShapeLoraResult(spec.key, cfg.steps, cfg.tokens, round(time.perf_counter() - t0, 2),
                             float(np.mean(losses[:tenth])), float(np.mean(losses[-tenth:])))
    return adapters, result
