"""Uniform magnitude width pruning: the simplest data-free reference.

A unit's score is the squared L2 norm of every weight it owns: for a KV group, its q_proj / k_proj / v_proj rows
and o_proj columns; for an MLP channel, its gate_proj / up_proj rows and down_proj column. Every layer keeps its
own ``kept_kv_groups`` / ``kept_ffn_channels`` best units (the same counts as every other width method); no bias
compensation, no calibration data.
"""

from __future__ import annotations

import torch

from core.baselines.build import uniform_width_selection, unit_totals, width_only_strategy
from core.baselines.config import BaselineConfig
from core.elastic.model import ElasticModel
from core.model.loader import ModelInfo
from core.strategy.schema import Strategy


def unit_magnitudes(model: ElasticModel, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kv-group scores [num_kv_heads], MLP-channel scores [intermediate_size])`` of decoder layer ``layer``."""
    squares = {n: lin.base.weight.detach().double().pow(2) for n, lin in model.elastic_linears(layer).items()}
    return unit_totals(squares, model.info)


def magnitude_width(model: ElasticModel, info: ModelInfo, sha256: str, windows: torch.Tensor, config: BaselineConfig) -> Strategy:
    """Widths of ``config.widths`` at full depth; ``windows`` is unused (data-free)."""
    attn, ffn = uniform_width_selection(info, config.widths, [unit_magnitudes(model, i) for i in range(info.num_layers)])
    return width_only_strategy(info, sha256, config.widths, attn, ffn, {}, allocation="uniform", meta={"data_free": True})
