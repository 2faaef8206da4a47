"""Extraction: one shape of an ``ElasticModel`` → stock HF config + tensors + card, in memory (no files).

The elastic model gives the active slice and merged weights (``get_active_subnet``); this module only activates
the shape for the duration (eval mode: deterministic adapters), picks the stock architecture that expresses it,
checks the tensors against that architecture and builds the card. The sinks (``core.export.writer``, ``.tar``,
``.gguf``) write the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PretrainedConfig

from core.elastic.model import ElasticModel
from core.elastic.subnet import ActiveSubnet, SubnetConfig
from core.errors import ConfigError, UnsupportedModelError
from core.export.arch import choose_architecture, effective_sliding_window, subnet_config
from core.export.card import build_card
from core.export.layers import build_model
from core.spec import SubnetSpec


@dataclass(frozen=True)
class Extracted:
    """A subnet ready for a sink: its tensors, stock config, per-layer dims (``None`` if uniform) and card."""

    subnet: ActiveSubnet
    config: PretrainedConfig
    layers: list[dict[str, int]] | None
    card: dict[str, Any]
    generation_config: Any | None
    dtype: torch.dtype

    @property
    def spec(self) -> SubnetSpec:
        return self.subnet.config.spec

    @property
    def architecture(self) -> str:
        return (self.config.architectures or ["?"])[0]


def layers_description(sub: SubnetConfig) -> list[dict[str, int]]:
    """Per-layer dims of a subnet (the content of ``amoeba_layers.json``)."""
    return [
        {"num_attention_heads": len(sl.q_heads), "num_key_value_heads": len(sl.kv_heads),
         "intermediate_size": len(sl.ffn_channels), "source_layer": sl.source}
        for sl in sub.layers
    ]


def subnet_hf_config(elastic: ElasticModel, sub: SubnetConfig, dtype: torch.dtype) -> tuple[PretrainedConfig, list[dict[str, int]] | None]:
    """Stock config of the subnet (per-layer maxima when layers differ) and the per-layer description if needed."""
    info = elastic.info
    layers = None if sub.uniform else layers_description(sub)
    sw = effective_sliding_window(elastic.hf.config, info)
    arch = choose_architecture(info.hidden_size, sub.q_head_counts, attn_bias=sub.attn_bias, mlp_bias=sub.mlp_bias, sliding_window=sw)
    cfg = subnet_config(
        elastic.hf.config, info, num_layers=len(sub.layers), kv_groups=max(sub.kv_group_counts), q_heads=max(sub.q_head_counts),
        ffn_channels=max(sub.ffn_channel_counts), attn_bias=sub.attn_bias, mlp_bias=sub.mlp_bias, architecture=arch, dtype=dtype,
    )
    return cfg, layers


def check_tensors(config: PretrainedConfig, layers: list[dict[str, int]] | None, tensors: dict[str, torch.Tensor]) -> None:
    """Every parameter the stock model expects is written with the right shape, and nothing else is.

    Raises ``UnsupportedModelError`` naming the first mismatch (this is what guarantees no bias is dropped).
    """
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(config, layers).state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        expected.pop("lm_head.weight", None)
    for k in sorted(set(expected) - set(tensors)):
        raise UnsupportedModelError(f"export would lack tensor {k} that {type(config).__name__} expects")
    for k in sorted(set(tensors) - set(expected)):
        raise UnsupportedModelError(f"export would drop tensor {k}: {type(config).__name__} has no slot for it")
    for k, shape in expected.items():
        if tuple(tensors[k].shape) != shape:
            raise UnsupportedModelError(f"tensor {k} has shape {tuple(tensors[k].shape)}, {type(config).__name__} expects {shape}")


def active(elastic: ElasticModel, spec: SubnetSpec, dtype: torch.dtype) -> ActiveSubnet:
    """``elastic.get_active_subnet`` of ``spec`` in eval mode; the previous shape (per-layer widths included) and
    train/eval mode are restored afterwards (only the layers whose slice differs are touched)."""
    previous, was_training = elastic.spec, elastic.training
    widths = {i: (sl.attn_width, sl.ffn_width) for i, sl in elastic.slices.items() if i in elastic.active_layers}
    elastic.eval()
    try:
        elastic.set_shape(spec)
        return elastic.get_active_subnet(dtype)
    finally:
        elastic.set_shape(previous)
        elastic.set_layer_widths(widths)
        elastic.train(was_training)


def extract(elastic: ElasticModel, spec: SubnetSpec | str, *, source: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
            dtype: torch.dtype = torch.float32) -> Extracted:
    """Cut ``spec`` out of ``elastic`` (slices, compensation biases, merged adapters); ``source`` and ``metrics`` go
    into the card and must be JSON-serialisable (``ConfigError`` otherwise)."""
    s = SubnetSpec.parse(spec) if isinstance(spec, str) else spec
    sub = active(elastic, s, dtype)
    config, layers = subnet_hf_config(elastic, sub.config, dtype)
    check_tensors(config, layers, sub.state_dict)
    card = build_card(elastic, sub, config, source=source, metrics=metrics, dtype=dtype)
    try:
        json.dumps(card)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"source/metrics for the card must be JSON-serialisable: {e}") from None
    return Extracted(sub, config, layers, card, getattr(elastic.hf, "generation_config", None), dtype)
