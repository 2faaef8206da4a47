"""FLAP (An et al., AAAI 2024, arXiv 2312.11983) as a width-only baseline: fluctuation importance + bias
compensation, at full depth.

Reuses Stage 1's width code (``core.strategy.width``): per-channel input variance × squared weight-column norm at
o_proj / down_proj, KV groups averaged, scores standardised per layer and module, removed channels' mean
contribution folded into the output bias. Allocation defaults to ``uniform`` (every layer keeps the same
fraction: FLAP's "UL-UM" variant, a stock Llama config every engine runs); ``allocation="global"`` is FLAP's
adaptive structure (one ranking across layers), whose per-layer shapes the latency profilers do not build.
"""

from __future__ import annotations

import torch

from core.baselines.build import width_only_strategy
from core.baselines.config import BaselineConfig
from core.elastic.model import ElasticModel
from core.model.loader import ModelInfo
from core.strategy.schema import Strategy
from core.strategy.width import ChannelStatsRecorder, select_widths


def flap_width(model: ElasticModel, info: ModelInfo, sha256: str, windows: torch.Tensor, config: BaselineConfig) -> Strategy:
    """Widths of ``config.widths`` at full depth, with compensation biases on ``config.bias_modules``."""
    dev = model.hf.lm_head.weight.device
    with torch.no_grad(), ChannelStatsRecorder(model) as rec:
        for batch in windows.long().split(config.batch_size):
            model(batch.to(dev))
    sel = select_widths(model, rec.stats, config.widths, allocation=config.allocation, bias_modules=config.bias_modules)
    meta = {"kept_counts": sel.counts, "bias_modules": list(config.bias_modules), "allocation": config.allocation}
    return width_only_strategy(info, sha256, config.widths, sel.attn, sel.ffn, sel.biases, allocation=config.allocation, meta=meta)
