"""Choose the stock HF architecture and config of an exported subnet.

transformers 5 refuses a ``LlamaConfig`` whose head count does not divide ``hidden_size`` (even with an
explicit ``head_dim``). Policy, per shape (``choose_architecture``):
1. heads divide hidden (in every layer) → ``LlamaForCausalLM`` (``attention_bias`` / ``mlp_bias`` when biases
   are carried);
2. otherwise, no bias needed → ``MistralForCausalLM`` with ``sliding_window=None`` (same function, no biases);
3. otherwise → ``GraniteForCausalLM`` with all multipliers neutral (``attention_multiplier = head_dim**-0.5``,
   embedding/residual/logits multipliers 1): the Llama function with ``attention_bias`` / ``mlp_bias``.
A base with an effective sliding window (Mistral) keeps it and therefore needs branch 2.
Parity of every branch against the elastic model is tested (tests/core/test_export.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from transformers import GraniteConfig, LlamaConfig, MistralConfig, PretrainedConfig

from core.errors import UnsupportedModelError
from core.model.loader import ModelInfo

Architecture = Literal["llama", "mistral", "granite"]
ARCHITECTURE_CLASSES: dict[str, str] = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "granite": "GraniteForCausalLM"}
_COMMON_KEYS = (
    "vocab_size", "hidden_size", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings",
    "bos_token_id", "eos_token_id", "pad_token_id", "hidden_act", "initializer_range",
)


def _rope(base: PretrainedConfig) -> dict[str, Any]:
    rp = getattr(base, "rope_parameters", None)
    if rp:
        return {"rope_parameters": dict(rp)}
    return {"rope_parameters": {"rope_type": "default", "rope_theta": float(getattr(base, "rope_theta", 10000.0))}}


def effective_sliding_window(base: PretrainedConfig, info: ModelInfo) -> int | None:
    """The base's sliding window when it actually limits attention (shorter than the context), else ``None``.

    Raises ``UnsupportedModelError`` for per-layer sliding attention (Qwen2 ``use_sliding_window``).
    """
    if "sliding_attention" in (getattr(base, "layer_types", None) or []):
        raise UnsupportedModelError("cannot export a base with per-layer sliding-window attention (layer_types has 'sliding_attention')")
    sw = getattr(base, "sliding_window", None)
    if info.model_type != "mistral" or sw is None or int(sw) >= info.max_position_embeddings:
        return None
    return int(sw)


def choose_architecture(
    hidden_size: int, heads_per_layer: Iterable[int], *, attn_bias: bool, mlp_bias: bool, sliding_window: int | None = None
) -> Architecture:
    """The stock architecture that expresses every layer's head count and the needed biases (see module doc)."""
    heads = list(heads_per_layer)
    if sliding_window is not None:
        if attn_bias or mlp_bias:
            raise UnsupportedModelError(
                f"cannot export a sliding-window ({sliding_window}) model with linear biases: no stock architecture has both; "
                "use a strategy without compensation biases"
            )
        return "mistral"
    if all(hidden_size % h == 0 for h in heads):
        return "llama"
    return "mistral" if not (attn_bias or mlp_bias) else "granite"


def subnet_config(
    base: PretrainedConfig,
    info: ModelInfo,
    *,
    num_layers: int,
    kv_groups: int,
    ffn_channels: int,
    q_heads: int | None = None,
    attn_bias: bool,
    mlp_bias: bool,
    architecture: Architecture | None = None,
    dtype: torch.dtype = torch.float32,
) -> PretrainedConfig:
    """Stock config for a subnet with ``kv_groups`` KV heads, ``q_heads`` query heads (default: the KV groups'
    full complement, ``kv_groups × group_size``) and ``ffn_channels`` MLP channels per layer.

    ``attn_bias``: q/k/v/o carry biases (Qwen2 bases or attention compensation); ``mlp_bias``: gate/up/down do.
    ``architecture`` overrides the per-shape choice (needed when layers differ, see ``choose_architecture``).
    """
    heads = kv_groups * info.group_size if q_heads is None else q_heads
    if heads % kv_groups:
        raise UnsupportedModelError(f"{heads} query heads cannot be shared evenly by {kv_groups} KV heads")
    sw = effective_sliding_window(base, info)
    arch = architecture or choose_architecture(info.hidden_size, [heads], attn_bias=attn_bias, mlp_bias=mlp_bias, sliding_window=sw)
    common = {k: getattr(base, k) for k in _COMMON_KEYS if hasattr(base, k)}
    common.update(
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_groups,
        head_dim=info.head_dim,
        intermediate_size=ffn_channels,
        **_rope(base),
    )
    common["dtype"] = str(dtype).removeprefix("torch.")
    cfg: PretrainedConfig
    if arch == "llama":
        cfg = LlamaConfig(attention_bias=attn_bias, mlp_bias=mlp_bias, **common)
    elif arch == "mistral":
        if attn_bias or mlp_bias:
            raise UnsupportedModelError("the Mistral architecture carries no linear biases; refusing to drop them")
        cfg = MistralConfig(sliding_window=sw, **common)
    else:
        cfg = GraniteConfig(
            attention_bias=attn_bias,
            mlp_bias=mlp_bias,
            attention_multiplier=info.head_dim**-0.5,
            embedding_multiplier=1.0,
            residual_multiplier=1.0,
            logits_scaling=1.0,
            **common,
        )
    cfg.architectures = [ARCHITECTURE_CLASSES[arch]]
    return cfg
