"""Parameter counts of a shape, for mapping "% remaining parameters" targets to shapes.

``decoder`` counts the kept decoder layers only (q/k/v/o and gate/up/down weights, their biases, both RMSNorm
weights); ``total`` adds the embedding, the LM head when untied, and the final norm. The "% remaining" of the
paper tables is ``decoder(shape) / decoder(full)`` here (the embedding is 15–25 % of a tiny model and no
method prunes it); ``total`` fractions are reported next to it. An exported subnet with compensation biases may
carry more tensors: stock configs switch biases on per module type, so q/k/v (and gate/up) get all-zero biases
that are not counted here.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError
from core.model.loader import ModelInfo
from core.spec import SubnetSpec
from core.strategy.schema import Strategy


@dataclass(frozen=True)
class ParamCount:
    """Parameters of one shape: kept decoder layers, and the whole model."""

    decoder: int
    total: int


def layer_params(
    info: ModelInfo, kv_groups: int, ffn_channels: int, *, attn_bias: bool = False, mlp_bias: bool = False, q_heads: int | None = None
) -> int:
    """One decoder layer keeping ``kv_groups`` KV heads, ``q_heads`` query heads (default: ``kv_groups × group_size``)
    and ``ffn_channels`` MLP channels.

    ``attn_bias`` / ``mlp_bias``: an o_proj / down_proj output bias (compensation) is present. q/k/v biases are
    counted when the model has them (``info.qkv_bias``).
    """
    h, hd, gs = info.hidden_size, info.head_dim, info.group_size
    q_out, kv_out = (kv_groups * gs if q_heads is None else q_heads) * hd, kv_groups * hd
    attn = h * (q_out + 2 * kv_out) + q_out * h + ((q_out + 2 * kv_out) if info.qkv_bias else 0) + (h if attn_bias else 0)
    mlp = 3 * h * ffn_channels + (h if mlp_bias else 0)
    return attn + mlp + 2 * h


def shape_params(info: ModelInfo, spec: SubnetSpec, strategy: Strategy | None = None) -> ParamCount:
    """Parameters of ``spec`` as ``strategy`` builds it (per-layer unit counts and biases); without a strategy,
    only the full shape exists."""
    if strategy is None:
        layers: tuple[int, ...] = tuple(range(info.num_layers))
        if spec != SubnetSpec(info.num_layers):
            raise ConfigError(f"shape {spec.key} needs a strategy; without one only the full shape exists")
    else:
        layers = strategy.kept_layers(strategy.space.validate(spec).num_layers)
    decoder = 0
    for i in layers:
        if strategy is None:
            q, kv, ffn, ab, mb = info.num_heads, info.num_kv_heads, info.intermediate_size, False, False
        else:
            q_heads, kv_heads = strategy.attn_heads(spec.attn_width, i)
            q, kv = len(q_heads), len(kv_heads)
            ffn = len(strategy.ffn_channels(spec.ffn_width, i))
            ab = strategy.bias("attn", spec.attn_width, i) is not None
            mb = strategy.bias("ffn", spec.ffn_width, i) is not None
        decoder += layer_params(info, kv, ffn, attn_bias=ab, mlp_bias=mb, q_heads=q)
    v, h = info.vocab_size, info.hidden_size
    return ParamCount(decoder, decoder + v * h * (1 if info.tie_word_embeddings else 2) + h)


def full_params(info: ModelInfo) -> ParamCount:
    """Parameters of the dense model."""
    return shape_params(info, SubnetSpec(info.num_layers))


def remaining_fraction(info: ModelInfo, spec: SubnetSpec, strategy: Strategy | None = None) -> tuple[float, float]:
    """``(decoder fraction, total fraction)`` of ``spec`` relative to the dense model."""
    p, full = shape_params(info, spec, strategy), full_params(info)
    return p.decoder / full.decoder, p.total / full.total
