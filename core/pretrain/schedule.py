"""Learning-rate schedule: linear warm-up then cosine decay to ``min_lr_ratio``."""

from __future__ import annotations

import math


def cosine_with_warmup(step: int, *, max_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier in [min_lr_ratio, 1] for optimiser step ``step`` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr_ratio
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
