"""Helpers every baseline uses: protected-block ranges, one-shot block removal, unit scores from per-weight scores,
and the two strategy shapes (depth-only at width 1, width-only at full depth) in the common ``Strategy`` data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from core.baselines.config import BaselineConfig
from core.elastic.model import head_rows, kv_rows
from core.errors import ConfigError
from core.model.loader import ModelInfo
from core.spec import ShapeSpace, format_width
from core.strategy.schema import Strategy
from core.strategy.units import kept_ffn_channels, kept_kv_groups
from core.strategy.width import top_units


def protected_blocks(method: str, info: ModelInfo, config: BaselineConfig, default_first: int, default_last: int) -> tuple[int, int]:
    """``(protect_first, protect_last)`` for a depth method: the config's values, else the method's defaults.

    Raises ``ConfigError`` when the unprotected blocks cannot reach ``config.min_layers``.
    """
    L = info.num_layers
    first = default_first if config.protect_first is None else config.protect_first
    last = default_last if config.protect_last is None else config.protect_last
    if not 1 <= config.min_layers <= L:
        raise ConfigError(f"{method}: min_layers must be in [1, {L}] for a {L}-layer model, got {config.min_layers}")
    removable = L - first - last
    if removable < L - config.min_layers:
        raise ConfigError(f"{method}: min_layers {config.min_layers} needs {L - config.min_layers} blocks removed, but only {max(removable, 0)} "
                          f"of {L} are removable (protect_first={first}, protect_last={last})")
    return first, last


def one_shot_removal(importance: Sequence[float], removable: Sequence[int], num_layers: int, min_layers: int) -> dict[int, tuple[int, ...]]:
    """Kept layers per depth when the ``L − d`` least important ``removable`` blocks are removed at once.

    ``importance[i]`` is block i's score (higher = more important); ties remove the lower index first. The
    removal sets are nested (depth d−1 removes one more block than depth d).
    """
    if len(importance) != num_layers:
        raise ConfigError(f"need one importance score per layer ({num_layers}), got {len(importance)}")
    order = sorted(removable, key=lambda i: (importance[i], i))
    if len(order) < num_layers - min_layers:
        raise ConfigError(f"only {len(order)} removable blocks, depth {min_layers} needs {num_layers - min_layers}")
    return {d: tuple(i for i in range(num_layers) if i not in set(order[: num_layers - d])) for d in range(min_layers, num_layers + 1)}


def depth_only_strategy(info: ModelInfo, sha256: str, kept: Mapping[int, Sequence[int]], min_layers: int, *, keep_last: int,
                        meta: dict[str, Any]) -> Strategy:
    """A strategy with depths ``[min_layers, L]`` and the width ladder ``(1,)`` (no width entries, no biases)."""
    st = Strategy(info, sha256, ShapeSpace(info.num_layers, min_layers, (1.0,)), keep_last, "uniform",
                  {d: tuple(sorted(kept[d])) for d in range(min_layers, info.num_layers + 1)}, {}, {}, {}, dict(meta))
    st.validate()
    return st


def width_only_strategy(info: ModelInfo, sha256: str, widths: Sequence[float], attn: dict[str, tuple[tuple[int, ...], ...]],
                        ffn: dict[str, tuple[tuple[int, ...], ...]], biases: dict[str, torch.Tensor], *, allocation: str,
                        meta: dict[str, Any]) -> Strategy:
    """A strategy at full depth only (``min_layers = L``) with kept units for every width of ``widths``."""
    L = info.num_layers
    st = Strategy(info, sha256, ShapeSpace(L, L, tuple(widths)), 0, allocation, {L: tuple(range(L))}, attn, ffn, biases, dict(meta))
    st.validate()
    return st


def unit_totals(scores: Mapping[str, torch.Tensor], info: ModelInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum per-element scores (one tensor per linear, shaped like its weight ``[out, in]``) over each unit.

    A KV group owns its q_proj / k_proj / v_proj rows and o_proj columns; an MLP channel its gate_proj / up_proj
    row and down_proj column. Returns ``(group scores [num_kv_heads], channel scores [intermediate_size])``.
    """
    groups = []
    for g in range(info.num_kv_heads):
        q, kv = head_rows([g], info), kv_rows([g], info)
        groups.append(scores["q_proj"][q].sum() + scores["k_proj"][kv].sum() + scores["v_proj"][kv].sum() + scores["o_proj"][:, q].sum())
    channels = scores["gate_proj"].sum(1) + scores["up_proj"].sum(1) + scores["down_proj"].sum(0)
    return torch.stack(groups), channels


def uniform_width_selection(info: ModelInfo, widths: Sequence[float], per_layer: Sequence[tuple[torch.Tensor, torch.Tensor]]
                            ) -> tuple[dict[str, tuple[tuple[int, ...], ...]], dict[str, tuple[tuple[int, ...], ...]]]:
    """Every layer keeps its own best ``kept_kv_groups`` / ``kept_ffn_channels`` units at each width below 1.

    ``per_layer[i]`` = (group scores, channel scores) of layer i (higher = keep). Returns ``(attn, ffn)`` tables.
    """
    attn, ffn = {}, {}
    for w in (x for x in widths if x != 1.0):
        attn[format_width(w)] = tuple(top_units(a, kept_kv_groups(info, w)) for a, _ in per_layer)
        ffn[format_width(w)] = tuple(top_units(f, kept_ffn_channels(info, w)) for _, f in per_layer)
    return attn, ffn
