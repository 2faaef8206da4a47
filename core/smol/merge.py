"""Merge the active shape's adapter update into sliced weights (what export writes)."""

from __future__ import annotations

import torch

from core.elastic.linear import ElasticLinear


def slice_weight(w: torch.Tensor, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> torch.Tensor:
    """Rows ``out_idx`` and columns ``in_idx`` of ``w`` ``[out, in]`` (``None`` keeps all)."""
    if out_idx is not None:
        w = w.index_select(0, out_idx.to(w.device))
    if in_idx is not None:
        w = w.index_select(1, in_idx.to(w.device))
    return w


def merged_active_weight(lin: ElasticLinear) -> torch.Tensor:
    """``[out_active, in_active]`` fp32 weight equal to the active slice plus the adapter's update (if any)."""
    w = lin.active_weight().detach().float()
    delta = lin.delta
    if delta is not None and hasattr(delta, "full_delta_weight"):
        w = w + slice_weight(delta.full_delta_weight().detach().float(), lin.out_idx, lin.in_idx)
    return w
