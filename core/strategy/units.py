"""How many units a width keeps: KV groups rounded to integers, MLP channels to hardware-friendly sizes."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.errors import ConfigError
from core.spec import normalise_width

if TYPE_CHECKING:
    from core.model.loader import ModelInfo


def ffn_align(intermediate_size: int) -> int:
    """Channel multiple for kept MLP widths: 64 for large MLPs, 32 from 512, 8 below (tiny test models)."""
    if intermediate_size >= 2048:
        return 64
    if intermediate_size >= 512:
        return 32
    return 8 if intermediate_size >= 64 else 1


def kept_kv_groups(info: ModelInfo, width: float) -> int:
    """KV groups kept at attention ``width`` with whole-group units (nearest integer, at least 1)."""
    return kept_attn_units(info, width, "kv_group")


def kept_ffn_channels(info: ModelInfo, width: float) -> int:
    """MLP channels kept at ``width``: nearest multiple of ``ffn_align``, at least one multiple."""
    if width == 1.0:
        return info.intermediate_size
    a = ffn_align(info.intermediate_size)
    n = max(1, math.floor(width * info.intermediate_size / a + 0.5)) * a
    return min(n, info.intermediate_size)


# ---- attention units: whole KV groups, or the same number of query heads inside every KV group ---------------

ATTN_UNITS = ("kv_group", "q_head")


def check_attn_unit(unit: str) -> str:
    """``unit`` if it is one of ``ATTN_UNITS``, else ``ConfigError`` naming the choices."""
    if unit not in ATTN_UNITS:
        raise ConfigError(f"unknown attention unit {unit!r}: expected one of {', '.join(ATTN_UNITS)}")
    return unit


def attn_unit_count(info: ModelInfo, unit: str) -> int:
    """Units a width is a fraction of: KV groups (``kv_group``) or query heads per KV group (``q_head``)."""
    return info.num_kv_heads if check_attn_unit(unit) == "kv_group" else info.group_size


def kept_attn_units(info: ModelInfo, width: float, unit: str) -> int:
    """Units kept at attention ``width``: nearest integer, at least 1 (per KV group for ``q_head``)."""
    n = attn_unit_count(info, unit)
    if width == 1.0:
        return n
    return max(1, min(n, math.floor(width * n + 0.5)))


def kept_heads(info: ModelInfo, width: float, unit: str = "kv_group") -> tuple[int, int]:
    """(query heads, KV heads) per layer at attention ``width``: what an export of that width has."""
    k = kept_attn_units(info, width, unit)
    if unit == "kv_group":
        return k * info.group_size, k
    return k * info.num_kv_heads, info.num_kv_heads


def heads_of_units(units: Sequence[int], info: ModelInfo, unit: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(query head indices, KV head indices) kept by the attention ``units`` of one layer (ascending).

    ``kv_group`` units are KV-group indices (each brings its ``group_size`` query heads); ``q_head`` units are
    query-head indices, all KV heads stay, and every KV group must keep the same number of its query heads.
    """
    gs = info.group_size
    if check_attn_unit(unit) == "kv_group":
        groups = tuple(sorted(units))
        return tuple(h for g in groups for h in range(g * gs, (g + 1) * gs)), groups
    heads = tuple(sorted(units))
    per_group = Counter(h // gs for h in heads)
    if set(per_group) != set(range(info.num_kv_heads)) or len(set(per_group.values())) != 1:
        raise ConfigError(f"query heads {list(heads)} do not keep the same number of heads in every one of {info.num_kv_heads} KV groups")
    return heads, tuple(range(info.num_kv_heads))


def width_ladder(n_units: int, targets: Sequence[float] = (1.0, 0.875, 0.75, 0.625)) -> tuple[float, ...]:
    """A ladder of exact fractions ``k / n_units``: the ``targets`` snapped to achievable counts; when that leaves
    fewer than 3 distinct widths and there are at most 4 units, every ``k / n_units`` (``1, 2/3, 1/3`` for 3)."""
    snapped = sorted({max(1, min(n_units, math.floor(t * n_units + 0.5))) for t in targets}, reverse=True)
    if len(snapped) < 3 and n_units <= 4:
        snapped = list(range(n_units, 0, -1))
    return tuple(normalise_width(k / n_units) for k in snapped)


def default_attn_ladder(info: ModelInfo, unit: str) -> tuple[float, ...]:
    """The attention ladder a model's unit count allows (16 heads over 8 groups: ``1, 7/8, 3/4, 5/8``; 3 units: ``1, 2/3, 1/3``)."""
    return width_ladder(attn_unit_count(info, unit))


def default_ffn_ladder(info: ModelInfo) -> tuple[float, ...]:
    """The MLP ladder: ``1, 7/8, 3/4, 5/8`` snapped to multiples of ``ffn_align`` channels."""
    a = ffn_align(info.intermediate_size)
    return width_ladder(max(1, info.intermediate_size // a))
