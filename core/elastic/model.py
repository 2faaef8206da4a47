"""``ElasticModel``: a wrapped HF Llama-family model on which any ``SubnetSpec`` can be activated in place.

Depth is handled by running only the kept decoder layers (our own loop over the HF layers); width by
``ElasticLinear`` slices of q/k/v/o (whole KV groups, or query heads inside every group) and gate/up/down
(MLP channels). Nothing in
transformers is patched: the wrapped model's linears are replaced on this instance only.

The shape comes from a ``SliceIndex`` (a Stage 1 ``Strategy`` is one); each layer records the slice it runs
(``LayerSlice``) and ``get_active_subnet`` reads those slices and the merged weights back (``core.elastic.subnet``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from core.elastic.index import SliceIndex
from core.elastic.linear import ATTN_TARGETS, MLP_TARGETS, TARGETS, ElasticLinear
from core.elastic.subnet import ActiveSubnet, LayerSlice, active_subnet, layer_slice
from core.errors import ConfigError
from core.model.loader import ModelInfo
from core.spec import SubnetSpec

__all__ = ["ATTN_TARGETS", "MLP_TARGETS", "TARGETS", "ElasticModel", "ForwardContext", "head_rows", "kv_rows", "q_rows"]


@dataclass
class ForwardContext:
    """Per-batch tensors shared by every layer: rotary embeddings and attention masks."""

    position_embeddings: tuple[torch.Tensor, torch.Tensor]
    masks: dict[str, torch.Tensor | None]


def q_rows(heads: list[int] | tuple[int, ...], info: ModelInfo) -> torch.Tensor:
    """q_proj rows / o_proj columns of the query ``heads`` (order preserved)."""
    hd = info.head_dim
    return torch.tensor([h * hd + d for h in heads for d in range(hd)], dtype=torch.long)


def head_rows(groups: list[int] | tuple[int, ...], info: ModelInfo) -> torch.Tensor:
    """q_proj rows / o_proj columns of the query heads in the kept KV ``groups`` (order preserved)."""
    gs = info.group_size
    return q_rows([h for g in groups for h in range(g * gs, (g + 1) * gs)], info)


def kv_rows(groups: list[int] | tuple[int, ...], info: ModelInfo) -> torch.Tensor:
    """k_proj / v_proj rows of the kept KV ``groups``."""
    hd = info.head_dim
    return torch.tensor([g * hd + d for g in groups for d in range(hd)], dtype=torch.long)


class ElasticModel(nn.Module):
    """Wraps a loaded HF model; ``set_shape`` activates a shape, ``forward`` returns logits ``[B, T, V]``."""

    def __init__(self, hf_model: PreTrainedModel, strategy: SliceIndex | None = None) -> None:
        super().__init__()
        self.hf = hf_model
        self.info = ModelInfo.from_config(hf_model.config)
        for layer in self.decoder_layers:
            for name in ATTN_TARGETS:
                lin = getattr(layer.self_attn, name)
                if not isinstance(lin, ElasticLinear):
                    setattr(layer.self_attn, name, ElasticLinear(lin))
            for name in MLP_TARGETS:
                lin = getattr(layer.mlp, name)
                if not isinstance(lin, ElasticLinear):
                    setattr(layer.mlp, name, ElasticLinear(lin))
        self.spec = SubnetSpec(self.info.num_layers, 1.0, 1.0)
        self.active_layers: tuple[int, ...] = tuple(range(self.info.num_layers))
        self.slices: dict[int, LayerSlice] = {}  # the slice each layer runs, recorded on activation
        self._comp: dict[int, tuple[torch.Tensor | None, torch.Tensor | None]] = {}  # and its compensation tensors
        self._strategy: SliceIndex | None = None
        self.strategy = strategy

    @property
    def strategy(self) -> SliceIndex | None:
        """The index shapes are activated from (``None``: only the full shape exists)."""
        return self._strategy

    @strategy.setter
    def strategy(self, strategy: SliceIndex | None) -> None:
        """Use another index (checked against the model); the full shape is active afterwards."""
        if strategy is not None:
            strategy.check_model(self.info)
        self._strategy = strategy
        self.slices, self._comp = {}, {}
        self.set_shape(SubnetSpec(self.info.num_layers, 1.0, 1.0))

    @property
    def decoder_layers(self) -> nn.ModuleList:
        return self.hf.model.layers  # type: ignore[no-any-return]

    def elastic_linears(self, layer: int) -> dict[str, ElasticLinear]:
        """The seven wrapped linears of decoder layer ``layer`` by name."""
        dl = self.decoder_layers[layer]
        out = {n: getattr(dl.self_attn, n) for n in ATTN_TARGETS}
        out.update({n: getattr(dl.mlp, n) for n in MLP_TARGETS})
        return out

    # ---- shape activation -------------------------------------------------------------------------
    def set_shape(self, spec: SubnetSpec | str) -> SubnetSpec:
        """Activate ``spec`` in place (validated against the strategy's space). Returns the parsed spec."""
        s = SubnetSpec.parse(spec) if isinstance(spec, str) else spec
        full = SubnetSpec(self.info.num_layers, 1.0, 1.0)
        if self.strategy is None:
            if s != full:
                raise ConfigError(f"shape {s.key} needs a strategy; without one only {full.key} exists")
            layers: tuple[int, ...] = tuple(range(self.info.num_layers))
        else:
            s = self.strategy.space.validate(s)
            layers = self.strategy.kept_layers(s.num_layers)
        self.active_layers = layers
        for i in layers:
            self._set_layer_width(i, s.attn_width, s.ffn_width)
        self.spec = s
        return s

    def get_active_subnet(self, dtype: torch.dtype = torch.float32) -> ActiveSubnet:
        """The active shape as ``(config, state_dict)``: kept layers renumbered, slices taken, adapters merged.

        Reads what the layers run (their ``LayerSlice`` and merged weights); nothing is re-derived or changed.
        ``NonFiniteWeightError`` names the first tensor with a NaN or inf.
        """
        return active_subnet(self, dtype)

    def set_layer_widths(self, widths: Mapping[int, tuple[float, float]]) -> None:
        """Override ``(attn_width, ffn_width)`` of some layers after ``set_shape`` (per-layer-group search).

        Each width must be in the strategy's ladder; ``spec`` keeps naming the uniform shape that was set.
        """
        for layer, (a, f) in widths.items():
            if not 0 <= layer < self.info.num_layers:
                raise ConfigError(f"layer {layer} out of range for {self.info.num_layers} layers")
            if self.strategy is None and (a, f) != (1.0, 1.0):
                raise ConfigError("per-layer widths need a strategy")
            if self.strategy is not None:
                self.strategy.space.width_index(a, "attn")
                self.strategy.space.width_index(f, "ffn")
            self._set_layer_width(layer, a, f)

    def _set_layer_width(self, layer: int, attn_w: float, ffn_w: float) -> None:
        """Restrict ``layer``'s linears to the widths and record its slice; a no-op when it already runs exactly
        that slice (same units and compensation tensors, so an index edited in place is still picked up)."""
        sl, attn_b, ffn_b = layer_slice(self.strategy, self.info, layer, attn_w, ffn_w)
        old = self._comp.get(layer)
        if self.slices.get(layer) == sl and old is not None and old[0] is attn_b and old[1] is ffn_b:
            return
        lin = self.elastic_linears(layer)
        dev = lin["o_proj"].base.weight.device
        attn: nn.Module = self.decoder_layers[layer].self_attn  # type: ignore[assignment]
        if sl.attn_full:
            for n in ATTN_TARGETS:
                lin[n].restrict()
        else:
            q, kv = q_rows(sl.q_heads, self.info).to(dev), kv_rows(sl.kv_heads, self.info).to(dev)
            lin["q_proj"].restrict(out_idx=q)
            lin["k_proj"].restrict(out_idx=kv)
            lin["v_proj"].restrict(out_idx=kv)
            lin["o_proj"].restrict(in_idx=q, extra_bias=_to(attn_b, lin["o_proj"].base.weight))
        # query heads per KV head of this instance's attention (fewer with ``q_head`` units); HF's attention
        # functions read it from the module, so this is per-instance state, not a patch of transformers
        setattr(attn, "num_key_value_groups", len(sl.q_heads) // len(sl.kv_heads))  # noqa: B010
        if sl.ffn_full:
            for n in MLP_TARGETS:
                lin[n].restrict()
        else:
            ch = torch.tensor(sl.ffn_channels, dtype=torch.long, device=dev)
            lin["gate_proj"].restrict(out_idx=ch)
            lin["up_proj"].restrict(out_idx=ch)
            lin["down_proj"].restrict(in_idx=ch, extra_bias=_to(ffn_b, lin["down_proj"].base.weight))
        self.slices[layer], self._comp[layer] = sl, (attn_b, ffn_b)

    # ---- forward pieces (the DP and calibration use these directly) -----------------------------
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``[B, T, H]``."""
        return self.hf.model.embed_tokens(input_ids)  # type: ignore[no-any-return]

    def context(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None) -> ForwardContext:
        """Rotary embeddings and masks for a batch whose embeddings are ``hidden`` ``[B, T, H]``; a 4D
        ``attention_mask`` is used as given, ``position_ids`` ``[B, T]`` default to ``0..T-1``."""
        cfg = self.hf.config
        pos = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0) if position_ids is None else position_ids
        kwargs = dict(config=cfg, inputs_embeds=hidden, attention_mask=attention_mask, cache=None, position_ids=pos)
        masks: dict[str, torch.Tensor | None] = {"full_attention": create_causal_mask(**kwargs)}  # type: ignore[arg-type]
        if getattr(cfg, "sliding_window", None) is not None and self.info.model_type == "mistral":
            masks["full_attention"] = create_sliding_window_causal_mask(**kwargs)  # type: ignore[arg-type]
        if "sliding_attention" in (getattr(cfg, "layer_types", None) or []):
            masks["sliding_attention"] = create_sliding_window_causal_mask(**kwargs)  # type: ignore[arg-type]
        return ForwardContext(self.hf.model.rotary_emb(hidden, position_ids=pos), masks)

    def run_layers(self, hidden: torch.Tensor, layers: tuple[int, ...] | list[int], ctx: ForwardContext) -> torch.Tensor:
        """Run the decoder layers ``layers`` (original indices, in order) on ``hidden`` ``[B, T, H]``.

        ``set_shape`` slices only the layers it activates: a layer outside the active shape runs the slice it last had.
        """
        for i in layers:
            dl = self.decoder_layers[i]
            mask = ctx.masks.get(getattr(dl, "attention_type", "full_attention"), ctx.masks["full_attention"])
            hidden = dl(hidden, attention_mask=mask, position_embeddings=ctx.position_embeddings, use_cache=False)
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm and LM head: ``[B, T, H]`` → ``[B, T, V]``."""
        return self.hf.lm_head(self.hf.model.norm(hidden))  # type: ignore[no-any-return]

    def final_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Hidden states after the final norm ``[B, T, H]`` with a custom 4D additive mask ``[B, 1, T, T]`` and
        positions ``[B, T]`` (packed multiple-choice scoring, ``core.eval.packing.PackedLM``)."""
        h = self.embed(input_ids)
        ctx = self.context(h, attention_mask.to(h.dtype), position_ids)
        return self.hf.model.norm(self.run_layers(h, self.active_layers, ctx))  # type: ignore[no-any-return]

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head only: ``[..., H]`` → ``[..., V]``."""
        return self.hf.lm_head(hidden)  # type: ignore[no-any-return]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, T, V]`` of the active shape."""
        h = self.embed(input_ids)
        ctx = self.context(h, attention_mask)
        return self.logits(self.run_layers(h, self.active_layers, ctx))


def _to(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """``t`` on the device and in the dtype of ``like`` (strategy biases are stored in fp32)."""
    return None if t is None else t.to(device=like.device, dtype=like.dtype)
