"""LLM-Pruner (Ma et al., NeurIPS 2023, arXiv 2305.11627), channel-wise variant, as a width baseline.

Coupled structures are pruned together: a KV group (its query heads' q_proj rows, its k_proj / v_proj rows and the
matching o_proj columns) and an MLP channel (gate_proj / up_proj rows, down_proj column). Importance is the
element-wise first-order Taylor term aggregated by sum, as the authors' default (``taylor param_first``):
``Σ_{w in group} |w · Σ_batches ∂L_b/∂w|`` on the calibration windows (the same products as Shortened LLaMA's
Taylor+). Deviations, so that every shape is a stock uniform config like the other width methods: every layer
is pruned at the same ratio (the paper leaves the first 4 and last 2 of 32 layers dense and prunes the rest
harder), and no second-order term. No bias compensation; LLM-Pruner's own recovery is a LoRA (Table 1 gives
every baseline the same per-shape LoRA).
"""

from __future__ import annotations

import torch

from core.baselines.block_taylor import taylor_products
from core.baselines.build import uniform_width_selection, unit_totals, width_only_strategy
from core.baselines.config import BaselineConfig
from core.elastic.model import TARGETS, ElasticModel
from core.model.loader import ModelInfo
from core.strategy.schema import Strategy


def unit_taylor(model: ElasticModel, windows: torch.Tensor, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer: (KV-group importance ``[num_kv_heads]``, MLP-channel importance ``[intermediate_size]``)."""
    acc = taylor_products(model, windows, batch_size)
    out = []
    for i in range(model.info.num_layers):
        scores = {}
        for name in TARGETS:
            module = "self_attn" if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            scores[name] = acc[(i, f"{module}.{name}.base.weight")].abs()
        out.append(unit_totals(scores, model.info))
    return out


def llm_pruner_width(model: ElasticModel, info: ModelInfo, sha256: str, windows: torch.Tensor, config: BaselineConfig) -> Strategy:
    """Widths of ``config.widths`` at full depth by first-order Taylor importance of coupled units."""
    attn, ffn = uniform_width_selection(info, config.widths, unit_taylor(model, windows, config.batch_size))
    return width_only_strategy(info, sha256, config.widths, attn, ffn, {}, allocation="uniform", meta={"importance": "taylor param_first, sum"})
