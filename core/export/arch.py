"""Choose the stock HF architecture and config of an exported (uniform-width) subnet.

transformers 5 refuses a ``LlamaConfig`` whose head count does not divide ``hidden_size`` (even with an
explicit ``head_dim``). Policy, per shape:
1. heads divide hidden → ``LlamaForCausalLM`` (``attention_bias`` / ``mlp_bias`` when biases are carried);
2. otherwise, no bias needed → ``MistralForCausalLM`` with ``sliding_window=None`` (same function, no biases);
3. otherwise → ``GraniteForCausalLM`` with all multipliers neutral (``attention_multiplier = head_dim**-0.5``,
   embedding/residual/logits multipliers 1): the Llama function with ``attention_bias`` / ``mlp_bias``.
Parity of every branch against the elastic model is tested.
"""

from __future__ import annotations

from typing import Any

from transformers import GraniteConfig, LlamaConfig, MistralConfig, PretrainedConfig

from core.model.loader import ModelInfo

_COMMON_KEYS = ("vocab_size", "hidden_size", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "hidden_act", "initializer_range")


def _rope(base: PretrainedConfig) -> dict[str, Any]:
    rp = getattr(base, "rope_parameters", None)
    if rp:
        return {"rope_parameters": dict(rp)}
    return {"rope_parameters": {"rope_type": "default", "rope_theta": float(getattr(base, "rope_theta", 10000.0))}}


def subnet_config(
    base: PretrainedConfig,
    info: ModelInfo,
    *,
    num_layers: int,
    kv_groups: int,
    ffn_channels: int,
    attn_bias: bool,
    mlp_bias: bool,
) -> PretrainedConfig:
    """Stock config for a subnet with ``kv_groups`` KV groups and ``ffn_channels`` MLP channels per layer.

    ``attn_bias``: q/k/v/o carry biases (Qwen2 bases or attention compensation); ``mlp_bias``: gate/up/down do.
    """
    heads = kv_groups * info.group_size
    common = {k: getattr(base, k) for k in _COMMON_KEYS if hasattr(base, k)}
    common.update(
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_groups,
        head_dim=info.head_dim,
        intermediate_size=ffn_channels,
        **_rope(base),
    )
    common["dtype"] = "float32"
    if info.hidden_size % heads == 0:
        return LlamaConfig(attention_bias=attn_bias, mlp_bias=mlp_bias, **common)
    if not attn_bias and not mlp_bias:
        return MistralConfig(sliding_window=None, **common)
    return GraniteConfig(
        attention_bias=attn_bias,
        mlp_bias=mlp_bias,
        attention_multiplier=info.head_dim**-0.5,
        embedding_multiplier=1.0,
        residual_multiplier=1.0,
        logits_scaling=1.0,
        **common,
    )
