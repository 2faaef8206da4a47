"""'The Unreasonable Ineffectiveness of the Deeper Layers' (Gromov et al. 2024, arXiv 2403.17887).

To remove n layers, find the start ℓ* minimising the angular distance between the residual stream entering
layer ℓ and the one entering layer ℓ + n, ``d(x^ℓ, x^{ℓ+n}) = arccos(cos(x^ℓ, x^{ℓ+n})) / π``, averaged over the
calibration windows, and remove the contiguous block ℓ*, …, ℓ*+n−1. ``x^L`` is the output of the last layer
before the final norm. The paper takes the final token of each sequence (``angular_token="last"``);
``"all"`` averages over every position instead. Each depth is chosen independently, so the removal sets of two
depths need not be nested. No block is protected by default (the paper lets the block reach the last layer).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from core.baselines.build import depth_only_strategy, protected_blocks
from core.baselines.config import BaselineConfig
from core.elastic.model import ElasticModel
from core.errors import ConfigError
from core.model.loader import ModelInfo
from core.strategy.schema import Strategy


def residual_states(model: ElasticModel, windows: torch.Tensor, batch_size: int, token: str) -> list[torch.Tensor]:
    """Unit-normalised residual states entering each layer and leaving the last: ``L + 1`` tensors ``[N, H]``.

    ``token="last"``: N = windows (final position); ``"all"``: N = windows × positions.
    """
    if token not in ("last", "all"):
        raise ConfigError(f"token must be 'last' or 'all', got {token!r}")
    L = model.info.num_layers
    dev = model.hf.lm_head.weight.device
    per_boundary: list[list[torch.Tensor]] = [[] for _ in range(L + 1)]
    with torch.no_grad():
        for batch in windows.long().split(batch_size):
            h = model.embed(batch.to(dev))
            ctx = model.context(h)
            for layer in range(L + 1):
                if layer > 0:
                    h = model.run_layers(h, [layer - 1], ctx)
                x = h[:, -1] if token == "last" else h.reshape(-1, h.shape[-1])
                per_boundary[layer].append(F.normalize(x.double(), dim=-1).cpu())
    return [torch.cat(xs) for xs in per_boundary]


def angular_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean of ``arccos(a_k · b_k) / π`` over rows of unit vectors ``a``, ``b`` ``[N, H]``."""
    cos = (a.double() * b.double()).sum(-1).clamp(-1.0, 1.0)
    return float(torch.arccos(cos).mean() / math.pi)


def best_blocks(states: list[torch.Tensor], first: int, last: int, min_layers: int) -> tuple[dict[int, tuple[int, ...]], dict[int, list[float]]]:
    """Kept layers per depth and the distance of every candidate start per removed count ``n``."""
    L = len(states) - 1
    kept: dict[int, tuple[int, ...]] = {L: tuple(range(L))}
    distances: dict[int, list[float]] = {}
    for n in range(1, L - min_layers + 1):
        starts = range(first, L - last - n + 1)
        dist = [angular_distance(states[s], states[s + n]) for s in starts]
        distances[n] = dist
        best = starts[min(range(len(dist)), key=lambda k: (dist[k], k))]
        kept[L - n] = tuple(i for i in range(L) if not best <= i < best + n)
    return kept, distances


def angular_block(model: ElasticModel, info: ModelInfo, sha256: str, windows: torch.Tensor, config: BaselineConfig) -> Strategy:
    """Depths ``[min_layers, L]``: for each, remove the contiguous block of smallest angular distance."""
    first, last = protected_blocks("angular", info, config, 0, 0)
    states = residual_states(model, windows, config.batch_size, config.angular_token)
    kept, distances = best_blocks(states, first, last, config.min_layers)
    meta = {"angular_distance": {str(n): d for n, d in distances.items()}, "token": config.angular_token,
            "protect_first": first, "protect_last": last}
    return depth_only_strategy(info, sha256, kept, config.min_layers, keep_last=last, meta=meta)
