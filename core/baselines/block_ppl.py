"""Shortened LLaMA, PPL criterion (Kim et al. 2024, arXiv 2402.02834): one-shot block pruning by perplexity.

Block i's importance is the calibration perplexity of the dense model with only block i removed; depth d
removes the ``L − d`` blocks whose removal hurts least, all at once (no re-scoring after each removal).
The paper's PPL criterion protects no block (its "+" heuristic belongs to the Taylor variant), so
``protect_first``/``protect_last`` default to 0. Scoring reuses Stage 1's ``ModelScorer`` (prefix-activation
cache): blocks are scored top-down so every score reruns only the layers above the removed block.
"""

from __future__ import annotations

import math

import torch

from core.baselines.build import depth_only_strategy, one_shot_removal, protected_blocks
from core.baselines.config import BaselineConfig
from core.elastic.model import ElasticModel
from core.model.loader import ModelInfo
from core.strategy.depth_dp import ModelScorer, NextTokenNLL
from core.strategy.schema import Strategy


def single_block_nll(model: ElasticModel, windows: torch.Tensor, batch_size: int) -> tuple[float, list[float]]:
    """``(dense NLL, [NLL without block i for every i])`` in nats per token on ``windows`` ``[W, T]``."""
    L = model.info.num_layers
    scorer = ModelScorer(model, NextTokenNLL(windows, batch_size), use_cache=True)
    dense = scorer.score(frozenset(), intact_below=L)
    without = [math.nan] * L
    for i in range(L - 1, -1, -1):  # top-down: the cache keeps the states below i
        without[i] = scorer.score(frozenset({i}), intact_below=i)
    return dense, without


def ppl_block(model: ElasticModel, info: ModelInfo, sha256: str, windows: torch.Tensor, config: BaselineConfig) -> Strategy:
    """Depths ``[min_layers, L]``: remove the blocks with the lowest single-removal perplexity."""
    first, last = protected_blocks("ppl-block", info, config, 0, 0)
    dense, nll = single_block_nll(model, windows, config.batch_size)
    L = info.num_layers
    kept = one_shot_removal(nll, range(first, L - last), L, config.min_layers)
    meta = {"dense_ppl": math.exp(dense), "block_removed_ppl": [math.exp(x) if x < 700 else None for x in nll],
            "protect_first": first, "protect_last": last}
    return depth_only_strategy(info, sha256, kept, config.min_layers, keep_last=last, meta=meta)
