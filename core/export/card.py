"""The subnet card (``amoeba_subnet.json``): what shape this is, where it came from, what was measured."""

from __future__ import annotations

import datetime as dt
from typing import Any

import torch
import transformers
from transformers import PretrainedConfig

import core
from core.elastic.model import ElasticModel
from core.elastic.subnet import ActiveSubnet
from core.strategy.schema import Strategy

CARD_VERSION = 1
_SCALARS = (str, int, float, bool, type(None))


def strategy_summary(elastic: ElasticModel) -> dict[str, Any] | None:
    """Allocation, space and the scalar entries of the strategy's ``meta`` (``None`` without a ``Strategy``)."""
    st = elastic.strategy
    if not isinstance(st, Strategy):
        return None
    meta = {k: v for k, v in st.meta.items() if isinstance(v, _SCALARS)}
    return {
        "model_sha256": st.model_sha256,
        "allocation": st.allocation,
        "keep_last": st.keep_last,
        "space": st.space.to_dict(),
        "attn_unit": st.attn_unit,
        "meta": meta,
    }


def build_card(
    elastic: ElasticModel,
    subnet: ActiveSubnet,
    config: PretrainedConfig,
    *,
    source: dict[str, Any] | None,
    metrics: dict[str, Any] | None,
    dtype: torch.dtype,
) -> dict[str, Any]:
    """Card data for one export (JSON-serialisable as long as ``source`` and ``metrics`` are)."""
    plan = subnet.config
    return {
        "card_version": CARD_VERSION,
        "shape": plan.spec.key,
        "num_layers": plan.spec.num_layers,
        "attn_width": plan.spec.attn_width,
        "ffn_width": plan.spec.ffn_width,
        "architecture": (config.architectures or ["?"])[0],
        "per_layer": not plan.uniform,
        "dims": {
            "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers,
            "num_attention_heads": config.num_attention_heads,
            "num_key_value_heads": config.num_key_value_heads,
            "head_dim": config.head_dim,
            "intermediate_size": config.intermediate_size,
            "vocab_size": config.vocab_size,
            "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        },
        "kept_layers": list(plan.kept_layers),
        "kept_kv_groups": [list(sl.kv_heads) for sl in plan.layers],
        "kept_q_heads": [list(sl.q_heads) for sl in plan.layers],
        "kept_kv_group_counts": list(plan.kv_group_counts),
        "kept_ffn_channel_counts": list(plan.ffn_channel_counts),
        "biases": {
            "attention": plan.attn_bias,
            "mlp": plan.mlp_bias,
            "attn_compensation_layers": [sl.source for sl in plan.layers if sl.attn_comp],
            "ffn_compensation_layers": [sl.source for sl in plan.layers if sl.ffn_comp],
        },
        "adapters_merged": plan.adapters_merged,
        "num_parameters": subnet.num_parameters,
        "dtype": str(dtype).removeprefix("torch."),
        "base_model": elastic.info.to_dict(),
        "source": dict(source or {}),
        "strategy": strategy_summary(elastic),
        "metrics": dict(metrics or {}),
        "amoeba_version": core.__version__,
        "transformers_version": transformers.__version__,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
