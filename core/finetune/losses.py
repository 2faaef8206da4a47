"""Next-token losses on aligned positions: logits at t predict token t + 1 (positions 0 .. T−2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def next_token_ce(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits[:, :-1]`` ``[B, T-1, V]`` against ``ids[:, 1:]`` ``[B, T-1]``."""
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v).float(), ids[:, 1:].reshape(-1))


def soft_ce(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over positions 0..T−2 of ``−Σ_v p_teacher log p_student`` (both ``[B, T, V]``).

    Uses the same positions as ``next_token_ce``: both sides are cut to ``[:, :-1]``, never shifted
    against each other (the reference code compared the student at t with the teacher at t + 1).
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student logits {tuple(student.shape)} and teacher logits {tuple(teacher.shape)} differ in shape")
    v = student.shape[-1]
    s = F.log_softmax(student[:, :-1].reshape(-1, v).float() / temperature, dim=-1)
    t = F.softmax(teacher[:, :-1].reshape(-1, v).float().detach() / temperature, dim=-1)
    return -(t * s).sum(-1).mean()
