"""The two depth references of Table 3: AmoebaLLM's own DP depth selection, and dropping the last layers.

``dp``: Stage 1's depth DP (DESIGN §2.1) through ``core.strategy.calibrate`` with the width ladder ``(1,)``, on
the same calibration windows as every baseline; ``keep_last`` = ``protect_last`` (default 1, Stage 1's default).
``drop-last``: keep layers ``0 .. d−1`` (no data; ``naive_strategy`` with ``keep_last = 0``).
"""

from __future__ import annotations

import torch

from core.baselines.config import BaselineConfig
from core.elastic.model import ElasticModel
from core.errors import ConfigError
from core.model.loader import ModelInfo
from core.strategy.calibrate import CalibrationConfig, calibrate
from core.strategy.schema import Strategy, naive_strategy

DP_DEFAULT_KEEP_LAST = 1


def dp_depth(model: ElasticModel, info: ModelInfo, sha256: str, windows: torch.Tensor, config: BaselineConfig) -> Strategy:
    """Depth DP over the calibration ``windows`` ``[W, T]`` (next-token NLL), widths fixed at 1."""
    if config.protect_first:
        raise ConfigError("dp: the depth DP has no protect_first (only protect_last, its keep_last)")
    keep_last = DP_DEFAULT_KEEP_LAST if config.protect_last is None else config.protect_last
    cfg = CalibrationConfig(min_layers=config.min_layers, keep_last=keep_last, widths=(1.0,), window=windows.shape[1], batch_size=config.batch_size,
                            max_tokens=None)  # every given window, as the other baselines
    st = calibrate(model, info, sha256, windows.reshape(-1), cfg)
    keys = ("dp_scores", "dp_perplexity", "dp_evaluations", "layer_forwards")
    st.meta = {k: st.meta[k] for k in keys} | {"keep_last": keep_last}
    return st


def drop_last(model: ElasticModel, info: ModelInfo, sha256: str, windows: torch.Tensor, config: BaselineConfig) -> Strategy:
    """Depth d keeps the first d layers (data-free)."""
    if config.protect_first or config.protect_last:
        raise ConfigError("drop-last: protect_first / protect_last do not apply (it always keeps the first d layers)")
    st = naive_strategy(info, sha256, config.min_layers, (1.0,), keep_last=0)
    st.meta = {}
    return st
