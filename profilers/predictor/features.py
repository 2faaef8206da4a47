"""Physically motivated features of a shape for one workload (numpy only).

Query heads (``q_heads``) and KV heads (``kv_groups``) enter separately: q/o weights and the score/value FLOPs
scale with query heads, k/v weights and the KV cache with KV heads (the two attention units prune different ones).

decode (tpot):  t ≈ a + L·(b + c·attention bytes + d·MLP bytes)   (weights + KV cache read per token)
prefill (ttft): t ≈ a + L·(b + c·attention FLOPs + d·MLP FLOPs)   (linear layers + causal attention scores)
peak memory:    m ≈ a + L·(c·attention bytes + d·MLP bytes)       (weights + final KV cache)
"""

from __future__ import annotations

import numpy as np

from profilers.dims import ShapeDims
from profilers.table import ModelFacts
from profilers.workload import Workload

FEATURE_SETS = ("decode", "prefill", "memory")

__all__ = ["FEATURE_SETS", "ShapeDims", "attn_params", "features", "mlp_params", "normalised", "q_heads_of"]


def q_heads_of(m: ModelFacts, d: ShapeDims) -> int:
    """Kept query heads of ``d`` (``None`` = the KV groups' full complement)."""
    return d.query_heads(m.num_heads, m.num_kv_heads)


def attn_params(m: ModelFacts, kv_groups: int, q_heads: int | None = None) -> int:
    """Weights of q, k, v, o in one layer keeping ``q_heads`` query heads (default: ``kv_groups × group_size``)
    and ``kv_groups`` KV heads."""
    heads = kv_groups * (m.num_heads // m.num_kv_heads) if q_heads is None else q_heads
    return 2 * m.hidden_size * heads * m.head_dim + 2 * m.hidden_size * kv_groups * m.head_dim


def mlp_params(m: ModelFacts, ffn_channels: int) -> int:
    """Weights of gate, up and down in one layer keeping ``ffn_channels`` channels."""
    return 3 * m.hidden_size * ffn_channels


def features(m: ModelFacts, w: Workload, d: ShapeDims, kind: str) -> np.ndarray:
    """Feature row ``[1, L, L·attn, L·mlp]`` (``memory``: ``[1, L·attn, L·mlp]``) in MB or GFLOPs."""
    e = w.dtype_bytes
    heads = q_heads_of(m, d)
    kv_elems_per_token = 2 * d.kv_groups * m.head_dim * w.batch
    L = float(d.num_layers)
    ap = attn_params(m, d.kv_groups, heads)
    if kind == "decode":
        avg_ctx = w.prompt_len + w.gen_len / 2.0
        attn = ap * e + kv_elems_per_token * avg_ctx * e
        mlp = mlp_params(m, d.ffn_channels) * e
        return np.array([1.0, L, L * attn / 1e6, L * mlp / 1e6])
    if kind == "prefill":
        tokens = w.batch * w.prompt_len
        attn = 2.0 * tokens * ap + 2.0 * w.batch * w.prompt_len**2 * heads * m.head_dim
        mlp = 2.0 * tokens * mlp_params(m, d.ffn_channels)
        return np.array([1.0, L, L * attn / 1e9, L * mlp / 1e9])
    if kind == "memory":
        attn = ap * e + kv_elems_per_token * w.context_len * e
        return np.array([1.0, L * attn / 1e6, L * mlp_params(m, d.ffn_channels) * e / 1e6])
    raise ValueError(f"unknown feature set {kind!r}; expected one of {FEATURE_SETS}")


def normalised(m: ModelFacts, d: ShapeDims) -> np.ndarray:
    """Shape coordinates in [0, 1] for the non-parametric model: depth, kept query-head, KV-head and MLP fractions."""
    return np.array([d.num_layers / m.num_layers, q_heads_of(m, d) / m.num_heads, d.kv_groups / m.num_kv_heads,
                     d.ffn_channels / m.intermediate_size])
