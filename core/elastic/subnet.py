"""The active subnet read back from an ``ElasticModel`` (Once-for-All's ``get_active_subnet``).

Every layer records the slice it runs (``LayerSlice``); ``active_subnet`` renumbers the active layers and takes
each wrapped linear's active weight with its adapter merged and its active bias (compensation folded in). When
any kept layer carries a bias in a module group (attention or MLP), every linear of that group gets one (zeros
where it had none), so no bias is ever dropped. Tied embeddings are written once (``model.embed_tokens.weight``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from core.elastic.index import SliceIndex
from core.elastic.linear import ATTN_TARGETS, MLP_TARGETS
from core.errors import NonFiniteWeightError
from core.model.loader import ModelInfo
from core.spec import SubnetSpec

if TYPE_CHECKING:
    from core.elastic.model import ElasticModel

_PREFIX = {**{n: "self_attn" for n in ATTN_TARGETS}, **{n: "mlp" for n in MLP_TARGETS}}
_TARGET_PARAMS = tuple(f"{p}.{n}." for n, p in _PREFIX.items())  # wrapped linears' (and adapters') parameters


@dataclass(frozen=True)
class LayerSlice:
    """What one layer runs: its widths, kept query / KV heads and MLP channels, and whether compensation is on."""

    source: int
    attn_width: float
    ffn_width: float
    q_heads: tuple[int, ...]
    kv_heads: tuple[int, ...]
    ffn_channels: tuple[int, ...]
    attn_comp: bool = False
    ffn_comp: bool = False
    attn_full: bool = True
    ffn_full: bool = True


def layer_slice(index: SliceIndex | None, info: ModelInfo, layer: int, attn_w: float, ffn_w: float
                ) -> tuple[LayerSlice, torch.Tensor | None, torch.Tensor | None]:
    """What ``layer`` keeps at the widths according to ``index`` and its compensation biases (attention, MLP)."""
    full_q, full_kv = tuple(range(info.num_heads)), tuple(range(info.num_kv_heads))
    attn_full, ffn_full = attn_w == 1.0 or index is None, ffn_w == 1.0 or index is None
    q, kv = (full_q, full_kv) if attn_full or index is None else index.attn_heads(attn_w, layer)
    ch = tuple(range(info.intermediate_size)) if ffn_full or index is None else tuple(index.ffn_channels(ffn_w, layer))
    attn_b = None if attn_full or index is None else index.bias("attn", attn_w, layer)
    ffn_b = None if ffn_full or index is None else index.bias("ffn", ffn_w, layer)
    sl = LayerSlice(layer, attn_w, ffn_w, tuple(q), tuple(kv), ch, attn_b is not None, ffn_b is not None, attn_full, ffn_full)
    return sl, attn_b, ffn_b


@dataclass(frozen=True)
class SubnetConfig:
    """The shape of an active subnet: kept layers in order (renumbered ``0..n-1``) and the bias flags it needs."""

    spec: SubnetSpec
    layers: tuple[LayerSlice, ...]
    attn_bias: bool
    mlp_bias: bool
    adapters_merged: int = 0

    @property
    def kept_layers(self) -> tuple[int, ...]:
        return tuple(sl.source for sl in self.layers)

    @property
    def q_head_counts(self) -> tuple[int, ...]:
        return tuple(len(sl.q_heads) for sl in self.layers)

    @property
    def kv_group_counts(self) -> tuple[int, ...]:
        return tuple(len(sl.kv_heads) for sl in self.layers)

    @property
    def ffn_channel_counts(self) -> tuple[int, ...]:
        return tuple(len(sl.ffn_channels) for sl in self.layers)

    @property
    def uniform(self) -> bool:
        """Every kept layer keeps the same numbers of heads and channels (a stock config expresses it)."""
        heads = set(zip(self.q_head_counts, self.kv_group_counts, strict=True))
        return len(heads) == 1 and len(set(self.ffn_channel_counts)) == 1


@dataclass(frozen=True)
class ActiveSubnet:
    """``(config, state_dict)`` of the active shape; the tensors are HF-named, on the CPU, contiguous."""

    config: SubnetConfig
    state_dict: dict[str, torch.Tensor]

    def __iter__(self) -> Iterator[SubnetConfig | dict[str, torch.Tensor]]:
        return iter((self.config, self.state_dict))

    @property
    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.state_dict.values())


def check_finite(tensors: dict[str, torch.Tensor], sources: dict[str, int] | None = None) -> None:
    """``NonFiniteWeightError`` naming the first tensor that holds a NaN or inf (PEFT's ``safe_merge`` check)."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            where = f" (layer {sources[name]} of the elastic model)" if sources and name in sources else ""
            raise NonFiniteWeightError(f"tensor {name}{where} has {bad} non-finite values (NaN/inf) after merging; refusing to export it")


def _linears(elastic: ElasticModel, layer: int) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """(merged active weight, active bias or ``None``) of the seven linears of ``layer``."""
    return {n: (lin.merged_weight(f"layer {layer} {n}"), lin.active_bias()) for n, lin in elastic.elastic_linears(layer).items()}


@torch.no_grad()
def active_subnet(elastic: ElasticModel, dtype: torch.dtype = torch.float32) -> ActiveSubnet:
    """The active shape of ``elastic`` as a standalone state dict (see the module doc)."""
    layers = tuple(elastic.slices[i] for i in elastic.active_layers)
    linears = [_linears(elastic, sl.source) for sl in layers]
    attn_bias = any(lin[n][1] is not None for lin in linears for n in ATTN_TARGETS)
    mlp_bias = any(lin[n][1] is not None for lin in linears for n in MLP_TARGETS)
    hf_state = elastic.hf.state_dict()
    keys = list(hf_state)
    first = next((i for i, k in enumerate(keys) if k.startswith("model.layers.")), len(keys))  # keep the stock order
    out = {k: hf_state[k] for k in keys[:first]}
    sources: dict[str, int] = {}
    for j, (sl, lin) in enumerate(zip(layers, linears, strict=True)):
        for name, (w, b) in lin.items():
            prefix = f"model.layers.{j}.{_PREFIX[name]}.{name}"
            out[f"{prefix}.weight"] = w
            if attn_bias if name in ATTN_TARGETS else mlp_bias:
                out[f"{prefix}.bias"] = b if b is not None else w.new_zeros(w.shape[0])
        for pname, t in elastic.decoder_layers[sl.source].state_dict().items():
            if not pname.startswith(_TARGET_PARAMS):
                out[f"model.layers.{j}.{pname}"] = t
        sources.update({k: sl.source for k in out if k.startswith(f"model.layers.{j}.")})
    out.update({k: hf_state[k] for k in keys[first:] if not k.startswith("model.layers.")})
    if elastic.info.tie_word_embeddings:
        out.pop("lm_head.weight", None)
    tensors = {k: v.detach().to(device="cpu", dtype=dtype).contiguous() for k, v in out.items()}
    check_finite(tensors, sources)
    adapters = sum(1 for sl in layers for lin in elastic.elastic_linears(sl.source).values() if lin.delta is not None)
    return ActiveSubnet(SubnetConfig(elastic.spec, layers, attn_bias, mlp_bias, adapters), tensors)
