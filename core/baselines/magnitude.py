"""Uniform magnitude width pruning: the simplest data-free reference.

A unit's score is the squared L2 norm of every weight it owns: for a KV group, its q_proj / k_proj / v_proj rows
and o_proj columns; for an MLP channel, its gate_proj / up_proj rows and down_proj column. Every layer keeps its
own ``kept_kv_groups`` / ``kept_ffn_channels`` best units (the same counts as every other width method); no bias
compensation, no calibration data.
"""

from __future__ import annotations

import torch

from core.baselines.build import width_only_strategy
from core.baselines.config import BaselineConfig
from core.elastic.model import ElasticModel, head_rows, kv_rows
from core.model.loader import ModelInfo
from core.spec import format_width
from core.strategy.schema import Strategy
from core.strategy.units import kept_ffn_channels, kept_kv_groups
from core.strategy.width import top_units


def _sq(w: torch.Tensor, dim: int) -> torch.Tensor:
    return w.detach().double().pow(2).sum(dim)


def unit_magnitudes(model: ElasticModel, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kv-group scores [num_kv_heads], MLP-channel scores [intermediate_size])`` of decoder layer ``layer``."""
    info, lin = model.info, model.elastic_linears(layer)
    groups = []
    for g in range(info.num_kv_heads):
        q, kv = head_rows([g], info), kv_rows([g], info)
        groups.append(_sq(lin["q_proj"].base.weight[q], 1).sum() + _sq(lin["k_proj"].base.weight[kv], 1).sum()
                      + _sq(lin["v_proj"].base.weight[kv], 1).sum() + _sq(lin["o_proj"].base.weight[:, q], 0).sum())
    ffn = _sq(lin["gate_proj"].base.weight, 1) + _sq(lin["up_proj"].base.weight, 1) + _sq(lin["down_proj"].base.weight, 0)
    return torch.stack(groups), ffn


def magnitude_width(model: ElasticModel, info: ModelInfo, sha256: str, windows: torch.Tensor, config: BaselineConfig) -> Strategy:
    """Widths of ``config.widths`` at full depth; ``windows`` is unused (data-free)."""
    scores = [unit_magnitudes(model, i) for i in range(info.num_layers)]
    attn, ffn = {}, {}
    for w in (x for x in config.widths if x != 1.0):
        attn[format_width(w)] = tuple(top_units(a, kept_kv_groups(info, w)) for a, _ in scores)
        ffn[format_width(w)] = tuple(top_units(f, kept_ffn_channels(info, w)) for _, f in scores)
    return width_only_strategy(info, sha256, config.widths, attn, ffn, {}, allocation="uniform", meta={"data_free": True})
