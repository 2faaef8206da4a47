"""Shortened LLaMA, Taylor+ criterion (Kim et al. 2024, arXiv 2402.02834): one-shot block pruning by a
first-order Taylor estimate of each block's weights' contribution to the calibration loss.

Salience of a weight matrix W: ``Σ_elements |Σ_batches W ⊙ ∂L_b/∂W|`` (L_b: mean next-token CE of calibration
batch b; gradients are accumulated per element over batches before the absolute value, as the authors' code
does). Block importance = sum over its weight matrices (the seven linears and both RMSNorm weights). The "+"
heuristic keeps the first and last few blocks: 4 and 2 of 32 in the paper, scaled here to ⌈L/8⌉ and ⌈L/16⌉
(``protect_first`` / ``protect_last`` override). Depth d removes the ``L − d`` least salient unprotected blocks.
"""

from __future__ import annotations

import math

import torch

from core.baselines.build import depth_only_strategy, one_shot_removal, protected_blocks
from core.baselines.config import BaselineConfig
from core.elastic.model import ElasticModel
from core.finetune.losses import next_token_ce
from core.model.loader import ModelInfo
from core.strategy.schema import Strategy


def block_weights(model: ElasticModel, layer: int) -> dict[str, torch.nn.Parameter]:
    """The weight matrices/vectors of decoder layer ``layer`` by name (adapter tensors excluded)."""
    return {n: p for n, p in model.decoder_layers[layer].named_parameters() if n.endswith("weight")}


def taylor_products(model: ElasticModel, windows: torch.Tensor, batch_size: int) -> dict[tuple[int, str], torch.Tensor]:
    """``Σ_batches W ⊙ ∂L_b/∂W`` (float64, shaped like W) for every weight of every decoder block, keyed
    ``(layer, parameter name)``. Only block weights receive gradients; every parameter's ``requires_grad`` is
    restored and no ``.grad`` is left behind."""
    L = model.info.num_layers
    params = {(i, n): p for i in range(L) for n, p in block_weights(model, i).items()}
    everything = list(model.parameters())
    flags = [p.requires_grad for p in everything]
    acc = {k: torch.zeros_like(p, dtype=torch.float64) for k, p in params.items()}
    dev = model.hf.lm_head.weight.device
    try:
        for p in everything:
            p.requires_grad_(False)
        for p in params.values():
            p.requires_grad_(True)
            p.grad = None
        with torch.enable_grad():
            for batch in windows.long().split(batch_size):
                ids = batch.to(dev)
                next_token_ce(model(ids), ids).backward()
                for k, p in params.items():
                    if p.grad is not None:
                        acc[k] += (p.detach() * p.grad).double()
                        p.grad = None
    finally:
        for p in params.values():
            p.grad = None
        for p, flag in zip(everything, flags, strict=True):
            p.requires_grad_(flag)
    return acc


def taylor_block_salience(model: ElasticModel, windows: torch.Tensor, batch_size: int) -> list[float]:
    """Taylor salience of every decoder block on ``windows`` ``[W, T]``: Σ over its weights of ``|taylor_products|``."""
    acc = taylor_products(model, windows, batch_size)
    totals = [0.0] * model.info.num_layers
    for (i, _), t in acc.items():
        totals[i] += float(t.abs().sum())
    return totals


def taylor_block(model: ElasticModel, info: ModelInfo, sha256: str, windows: torch.Tensor, config: BaselineConfig) -> Strategy:
    """Depths ``[min_layers, L]``: remove the unprotected blocks of lowest Taylor salience."""
    L = info.num_layers
    first, last = protected_blocks("taylor-block", info, config, math.ceil(L / 8), math.ceil(L / 16))
    salience = taylor_block_salience(model, windows, config.batch_size)
    kept = one_shot_removal(salience, range(first, L - last), L, config.min_layers)
    meta = {"block_salience": salience, "protect_first": first, "protect_last": last}
    return depth_only_strategy(info, sha256, kept, config.min_layers, keep_last=last, meta=meta)
