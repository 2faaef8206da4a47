"""Physical slicing of one shape out of an ``ElasticModel``: which units each kept layer keeps, and the tensors.

Pure pieces: ``plan_subnet`` (strategy + shape → per-layer plan) and ``subnet_tensors`` (elastic model + plan →
HF-named tensors of the standalone subnet, adapters merged, compensation biases folded into ``o_proj`` /
``down_proj`` biases). Nothing here writes files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from core.elastic.linear import ElasticLinear
from core.elastic.model import ATTN_TARGETS, MLP_TARGETS, ElasticModel, kv_rows, q_rows
from core.errors import ConfigError
from core.model.loader import ModelInfo
from core.spec import SubnetSpec
from core.strategy.schema import Strategy

_PREFIX = {**{n: "self_attn" for n in ATTN_TARGETS}, **{n: "mlp" for n in MLP_TARGETS}}
_TARGET_PARAMS = tuple(f"{p}.{n}." for n, p in _PREFIX.items())  # wrapped linears' (and adapters') parameter prefixes


@runtime_checkable
class MergeableDelta(Protocol):
    """An adapter on an ``ElasticLinear`` that export can merge into the weight (e.g. a SMoL LoRA)."""

    def full_delta_weight(self) -> torch.Tensor:
        """Merged delta ``[out_features, in_features]`` (unsliced, scale included) for the active shape."""
        ...


@dataclass(frozen=True)
class LayerPlan:
    """What one kept layer keeps: original index, query and KV heads, MLP channels, compensation biases ``[hidden]``."""

    source: int
    q_heads: tuple[int, ...]
    kv_heads: tuple[int, ...]
    ffn_channels: tuple[int, ...]
    attn_comp: torch.Tensor | None = None
    ffn_comp: torch.Tensor | None = None


@dataclass(frozen=True)
class SubnetPlan:
    """A shape resolved against a strategy: the kept layers in order (renumbered 0..n-1 on export)."""

    spec: SubnetSpec
    layers: tuple[LayerPlan, ...]

    @property
    def kept_layers(self) -> tuple[int, ...]:
        return tuple(lp.source for lp in self.layers)

    @property
    def kv_group_counts(self) -> tuple[int, ...]:
        """KV heads per kept layer."""
        return tuple(len(lp.kv_heads) for lp in self.layers)

    @property
    def q_head_counts(self) -> tuple[int, ...]:
        """Query heads per kept layer."""
        return tuple(len(lp.q_heads) for lp in self.layers)

    @property
    def ffn_channel_counts(self) -> tuple[int, ...]:
        return tuple(len(lp.ffn_channels) for lp in self.layers)

    @property
    def uniform(self) -> bool:
        """Every kept layer keeps the same numbers of heads and MLP channels (a stock config expresses it)."""
        return len(set(zip(self.q_head_counts, self.kv_group_counts, strict=True))) == 1 and len(set(self.ffn_channel_counts)) == 1


def plan_subnet(strategy: Strategy | None, info: ModelInfo, spec: SubnetSpec) -> SubnetPlan:
    """Resolve ``spec`` against ``strategy`` (``None``: only the full shape exists)."""
    if strategy is None:
        full = SubnetSpec(info.num_layers, 1.0, 1.0)
        if spec != full:
            raise ConfigError(f"shape {spec.key} needs a strategy; without one only {full.key} exists")
        heads, kv, chans = tuple(range(info.num_heads)), tuple(range(info.num_kv_heads)), tuple(range(info.intermediate_size))
        return SubnetPlan(spec, tuple(LayerPlan(i, heads, kv, chans) for i in range(info.num_layers)))
    spec = strategy.space.validate(spec)
    layers = tuple(
        LayerPlan(
            i,
            *strategy.attn_heads(spec.attn_width, i),
            ffn_channels=tuple(strategy.ffn_channels(spec.ffn_width, i)),
            attn_comp=strategy.bias("attn", spec.attn_width, i),
            ffn_comp=strategy.bias("ffn", spec.ffn_width, i),
        )
        for i in strategy.kept_layers(spec.num_layers)
    )
    return SubnetPlan(spec, layers)


def merged_weight(lin: ElasticLinear, name: str = "linear") -> torch.Tensor:
    """Full-size ``[out, in]`` weight of ``lin`` with its adapter merged (fp32 when an adapter is attached)."""
    w = lin.base.weight
    if lin.delta is None:
        return w
    if not isinstance(lin.delta, MergeableDelta):
        raise ConfigError(f"{name}: attached adapter {type(lin.delta).__name__} cannot be merged (it has no full_delta_weight())")
    dw = lin.delta.full_delta_weight()
    if tuple(dw.shape) != tuple(w.shape):
        raise ConfigError(f"{name}: adapter delta has shape {tuple(dw.shape)}, expected the full weight shape {tuple(w.shape)}")
    return w.float() + dw.to(device=w.device, dtype=torch.float32)


def _sliced(lin: ElasticLinear, name: str, rows: torch.Tensor | None, cols: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight ``[len(rows), len(cols)]``, base bias on ``rows`` or ``None``)."""
    w = merged_weight(lin, name)
    b: torch.Tensor | None = lin.base.bias
    if rows is not None:
        w = w.index_select(0, rows.to(w.device))
        b = None if b is None else b.index_select(0, rows.to(b.device))
    if cols is not None:
        w = w.index_select(1, cols.to(w.device))
    return w, b


def _layer_linears(elastic: ElasticModel, lp: LayerPlan) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """The seven sliced (weight, bias-or-None) pairs of one kept layer; compensation folded into o/down biases."""
    info = elastic.info
    lin = elastic.elastic_linears(lp.source)
    full_q = lp.q_heads == tuple(range(info.num_heads))
    full_kv = lp.kv_heads == tuple(range(info.num_kv_heads))
    full_ffn = lp.ffn_channels == tuple(range(info.intermediate_size))
    q = None if full_q else q_rows(lp.q_heads, info)
    kv = None if full_kv else kv_rows(lp.kv_heads, info)
    ch = None if full_ffn else torch.tensor(lp.ffn_channels, dtype=torch.long)
    where = f"layer {lp.source}"
    out = {
        "q_proj": _sliced(lin["q_proj"], f"{where} q_proj", q, None),
        "k_proj": _sliced(lin["k_proj"], f"{where} k_proj", kv, None),
        "v_proj": _sliced(lin["v_proj"], f"{where} v_proj", kv, None),
        "o_proj": _sliced(lin["o_proj"], f"{where} o_proj", None, q),
        "gate_proj": _sliced(lin["gate_proj"], f"{where} gate_proj", ch, None),
        "up_proj": _sliced(lin["up_proj"], f"{where} up_proj", ch, None),
        "down_proj": _sliced(lin["down_proj"], f"{where} down_proj", None, ch),
    }
    for name, comp in (("o_proj", lp.attn_comp), ("down_proj", lp.ffn_comp)):
        if comp is not None:
            w, b = out[name]
            comp = comp.to(device=w.device, dtype=torch.float32)
            out[name] = (w, comp if b is None else b.float() + comp)
    return out


@dataclass(frozen=True)
class SubnetTensors:
    """HF-named tensors of a subnet and whether its config must enable attention / MLP biases."""

    tensors: dict[str, torch.Tensor]
    attn_bias: bool
    mlp_bias: bool

    @property
    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.tensors.values())


@torch.no_grad()
def subnet_tensors(elastic: ElasticModel, plan: SubnetPlan, dtype: torch.dtype = torch.float32) -> SubnetTensors:
    """Slice ``plan`` out of ``elastic`` (its adapters must be set to the plan's shape: call ``set_shape`` first).

    Kept layers are renumbered ``0..n-1``. When any kept layer carries a bias in a module group (attention or
    MLP), every linear of that group gets one (zeros where it had none), so no bias is ever dropped.
    Tied embeddings are written once (``model.embed_tokens.weight``).
    """
    linears = [_layer_linears(elastic, lp) for lp in plan.layers]
    attn_bias = any(lin[n][1] is not None for lin in linears for n in ATTN_TARGETS)
    mlp_bias = any(lin[n][1] is not None for lin in linears for n in MLP_TARGETS)
    out: dict[str, torch.Tensor] = {}
    for key, t in elastic.hf.state_dict().items():
        if not key.startswith("model.layers."):
            out[key] = t
    if elastic.info.tie_word_embeddings:
        out.pop("lm_head.weight", None)
    for j, (lp, lin) in enumerate(zip(plan.layers, linears, strict=True)):
        for name, (w, b) in lin.items():
            prefix = f"model.layers.{j}.{_PREFIX[name]}.{name}"
            out[f"{prefix}.weight"] = w
            if attn_bias if name in ATTN_TARGETS else mlp_bias:
                out[f"{prefix}.bias"] = b if b is not None else w.new_zeros(w.shape[0])
        for pname, t in elastic.decoder_layers[lp.source].state_dict().items():
            if not pname.startswith(_TARGET_PARAMS):
                out[f"model.layers.{j}.{pname}"] = t
    return SubnetTensors({k: v.detach().to(device="cpu", dtype=dtype).contiguous() for k, v in out.items()}, attn_bias, mlp_bias)
