"""How many units a width keeps: KV groups rounded to integers, MLP channels to hardware-friendly sizes."""

from __future__ import annotations

import math

from core.model.loader import ModelInfo


def ffn_align(intermediate_size: int) -> int:
    """Channel multiple for kept MLP widths: 64 for large MLPs, 32 from 512, 8 below (tiny test models)."""
    if intermediate_size >= 2048:
        return 64
    if intermediate_size >= 512:
        return 32
    return 8 if intermediate_size >= 64 else 1


def kept_kv_groups(info: ModelInfo, width: float) -> int:
    """KV groups kept at attention ``width`` (nearest integer, at least 1)."""
    if width == 1.0:
        return info.num_kv_heads
    return max(1, min(info.num_kv_heads, math.floor(width * info.num_kv_heads + 0.5)))


def kept_ffn_channels(info: ModelInfo, width: float) -> int:
    """MLP channels kept at ``width``: nearest multiple of ``ffn_align``, at least one multiple."""
    if width == 1.0:
        return info.intermediate_size
    a = ffn_align(info.intermediate_size)
    n = max(1, math.floor(width * info.intermediate_size / a + 0.5)) * a
    return min(n, info.intermediate_size)
