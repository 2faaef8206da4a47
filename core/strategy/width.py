"""Stage 1 width (DESIGN §2.2): FLAP fluctuation importance, unit allocation per width, bias compensation.

Pieces: ``ChannelStatsRecorder`` (forward pre-hooks that stream per-channel moments of the inputs of o_proj and
down_proj), ``unit_scores`` (variance × squared weight-column norm, KV groups averaged, standardised per layer and
module type), ``uniform``/``global`` allocation, ``compensation_bias``, and ``select_widths`` combining them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

import torch
from torch.utils.hooks import RemovableHandle

from core.elastic.linear import ElasticLinear
from core.elastic.model import ElasticModel, q_rows
from core.errors import ConfigError
from core.model.loader import ModelInfo
from core.spec import format_width
from core.strategy.config import ALLOCATIONS, parse_bias_modules
from core.strategy.schema import BIAS_MODULES, bias_key
from core.strategy.units import check_attn_unit, heads_of_units, kept_attn_units, kept_ffn_channels


@dataclass
class RunningMoments:
    """Per-channel count, mean ``[C]`` and sum of squared deviations ``[C]`` (float64), merged batch by batch."""

    count: int = 0
    mean: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    m2: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))

    def update(self, x: torch.Tensor) -> None:
        """Add observations ``x`` ``[N, C]`` (Chan et al.'s parallel merge; nothing is stored)."""
        x = x.detach().to(torch.float64)
        n_b = x.shape[0]
        if n_b == 0:
            return
        mean_b = x.mean(0)
        m2_b = (x - mean_b).pow(2).sum(0)
        if self.count == 0:
            self.count, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / total)
        self.m2 = self.m2 + m2_b + delta.pow(2) * (self.count * n_b / total)
        self.count = total

    @property
    def variance(self) -> torch.Tensor:
        """Population variance ``[C]``."""
        if self.count == 0:
            raise ConfigError("no calibration tokens were recorded")
        return self.m2 / self.count


@dataclass
class ChannelStats:
    """Input moments of o_proj (``attn``) and down_proj (``ffn``), one per decoder layer."""

    attn: list[RunningMoments]
    ffn: list[RunningMoments]

    @property
    def tokens(self) -> int:
        return self.attn[0].count if self.attn else 0


class ChannelStatsRecorder:
    """Context manager: while active, every dense forward of ``model`` adds to ``stats``.

    Hooks are forward pre-hooks on the o_proj / down_proj ``ElasticLinear`` instances; they refuse sliced inputs
    (statistics are defined on the dense model).
    """

    def __init__(self, model: ElasticModel) -> None:
        self.model = model
        n = model.info.num_layers
        self.stats = ChannelStats([RunningMoments() for _ in range(n)], [RunningMoments() for _ in range(n)])
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> ChannelStatsRecorder:
        for i in range(self.model.info.num_layers):
            lin = self.model.elastic_linears(i)
            self._handles.append(lin["o_proj"].register_forward_pre_hook(_recording_hook(self.stats.attn[i])))
            self._handles.append(lin["down_proj"].register_forward_pre_hook(_recording_hook(self.stats.ffn[i])))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def _recording_hook(moments: RunningMoments):  # type: ignore[no-untyped-def]
    def hook(module: ElasticLinear, args: tuple[torch.Tensor, ...]) -> None:
        if module.in_idx is not None:
            raise ConfigError("channel statistics need the dense model: set full width before recording")
        x = args[0]
        moments.update(x.reshape(-1, x.shape[-1]))

    return hook


# ---- scores -----------------------------------------------------------------------------------------------


def fluctuation(variance: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """FLAP channel score ``[C]``: input variance ``[C]`` × squared L2 norm of the weight column (``weight [out, C]``)."""
    return variance.to(torch.float64) * weight.detach().to(torch.float64).pow(2).sum(0)


def kv_group_scores(channel_scores: torch.Tensor, info: ModelInfo) -> torch.Tensor:
    """``[num_kv_heads]``: mean over each KV group's o_proj input channels (its query heads × head_dim)."""
    return channel_scores.reshape(info.num_kv_heads, info.group_size * info.head_dim).mean(1)


def q_head_scores(channel_scores: torch.Tensor, info: ModelInfo) -> torch.Tensor:
    """``[num_heads]``: mean over each query head's o_proj input channels."""
    return channel_scores.reshape(info.num_heads, info.head_dim).mean(1)


def attn_unit_scores(channel_scores: torch.Tensor, info: ModelInfo, unit: str) -> torch.Tensor:
    """Scores of the attention units of one layer: KV groups ``[num_kv_heads]`` or query heads ``[num_heads]``."""
    return kv_group_scores(channel_scores, info) if check_attn_unit(unit) == "kv_group" else q_head_scores(channel_scores, info)


def top_heads_per_group(scores: torch.Tensor, info: ModelInfo, k: int) -> tuple[int, ...]:
    """The ``k`` best query heads of every KV group (``scores [num_heads]``), ascending global head indices."""
    gs = info.group_size
    kept: list[int] = []
    for g in range(info.num_kv_heads):
        kept.extend(g * gs + j for j in top_units(scores[g * gs : (g + 1) * gs], k))
    return tuple(sorted(kept))


def standardise(x: torch.Tensor) -> torch.Tensor:
    """``(x − mean) / std`` (population std); all zeros when there is a single unit or no spread."""
    if x.numel() < 2:
        return torch.zeros_like(x)
    std = x.std(correction=0)
    return torch.zeros_like(x) if std == 0 else (x - x.mean()) / std


@dataclass(frozen=True)
class UnitScores:
    """Standardised importance per layer: ``attn[i]`` ``[attention units]``, ``ffn[i]`` ``[intermediate_size]``."""

    attn: list[torch.Tensor]
    ffn: list[torch.Tensor]


def unit_scores(model: ElasticModel, stats: ChannelStats, attn_unit: str = "kv_group") -> UnitScores:
    """Fluctuation scores of every attention unit and MLP channel, standardised within each layer and module type."""
    attn, ffn = [], []
    for i in range(model.info.num_layers):
        lin = model.elastic_linears(i)
        attn.append(standardise(attn_unit_scores(fluctuation(stats.attn[i].variance, lin["o_proj"].base.weight), model.info, attn_unit)))
        ffn.append(standardise(fluctuation(stats.ffn[i].variance, lin["down_proj"].base.weight)))
    return UnitScores(attn, ffn)


# ---- allocation -------------------------------------------------------------------------------------------


def top_units(scores: torch.Tensor, k: int) -> tuple[int, ...]:
    """Indices of the ``k`` best units of ``scores`` ``[U]``, ascending (ties: lower index wins)."""
    if not 1 <= k <= scores.numel():
        raise ConfigError(f"cannot keep {k} of {scores.numel()} units")
    order = torch.argsort(-scores, stable=True)[:k]
    return tuple(sorted(int(i) for i in order))


def unit_param_cost(info: ModelInfo, module: str, attn_unit: str = "kv_group") -> int:
    """Parameters one unit carries: a KV group (q, k, v rows and o columns), a query head (q rows, o columns)
    or an MLP channel (gate, up, down)."""
    h, hd, gs = info.hidden_size, info.head_dim, info.group_size
    if module == "attn" and attn_unit == "q_head":
        return 2 * hd * h + (hd if info.qkv_bias else 0)
    if module == "attn":
        return (2 * gs + 2) * hd * h + ((gs + 2) * hd if info.qkv_bias else 0)
    if module == "ffn":
        return 3 * h
    raise ConfigError(f"unknown module {module!r}: expected one of {BIAS_MODULES}")


def global_allocation(scores: Sequence[torch.Tensor], unit_cost: float, budget: float) -> list[tuple[int, ...]]:
    """One ranking across layers: every layer's best unit first, then the best remaining units while the kept
    parameters (``unit_cost`` each) fit ``budget``. Returns kept indices per layer, ascending."""
    kept = [{top_units(s, 1)[0]} for s in scores]
    spent = unit_cost * len(kept)
    if spent > budget + 1e-9:
        raise ConfigError(f"budget {budget:g} is below one unit per layer ({spent:g} parameters)")
    rest = sorted((-float(v), layer, j) for layer, s in enumerate(scores) for j, v in enumerate(s.tolist()) if j not in kept[layer])
    for _, layer, j in rest:
        if spent + unit_cost > budget + 1e-9:
            break
        kept[layer].add(j)
        spent += unit_cost
    return [tuple(sorted(k)) for k in kept]


def compensation_bias(weight: torch.Tensor, mean: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """``[out]`` = Σ over removed input channels j of ``weight[:, j] · mean[j]`` (``weight [out, C]``, ``mean [C]``)."""
    removed = torch.ones(weight.shape[1], dtype=torch.bool)
    removed[kept.cpu()] = False
    w = weight.detach().to("cpu", torch.float64)
    return (w[:, removed] @ mean.to(torch.float64)[removed]).float()


# ---- the width part of a strategy --------------------------------------------------------------------------


@dataclass(frozen=True)
class WidthSelection:
    """Kept units per width (canonical width text) and layer, compensation biases, and kept counts per layer."""

    attn: dict[str, tuple[tuple[int, ...], ...]]
    ffn: dict[str, tuple[tuple[int, ...], ...]]
    biases: dict[str, torch.Tensor]
    counts: dict[str, dict[str, list[int]]]


def select_widths(
    model: ElasticModel,
    stats: ChannelStats,
    widths: Sequence[float],
    *,
    allocation: str = "uniform",
    bias_modules: Sequence[str] = BIAS_MODULES,
    attn_widths: Sequence[float] | None = None,
    attn_unit: str = "kv_group",
) -> WidthSelection:
    """Kept attention units / MLP channels for every width < 1 and the compensation biases of ``bias_modules``.

    ``widths`` is the MLP ladder, ``attn_widths`` the attention ladder (``None``: the same). ``attn_unit``:
    ``kv_group`` (whole KV groups) or ``q_head`` (the best ``k`` query heads inside every KV group, all KV heads
    kept). ``uniform``: each layer keeps ``kept_attn_units`` / ``kept_ffn_channels`` of its own best units.
    ``global``: one ranking across layers with the same total parameter count as ``uniform`` (``kv_group`` only:
    ``q_head`` needs equal counts per group). Width 1 needs no entry.
    """
    if allocation not in ALLOCATIONS:
        raise ConfigError(f"unknown allocation {allocation!r}: expected one of {ALLOCATIONS}")
    check_attn_unit(attn_unit)
    if allocation == "global" and attn_unit == "q_head":
        raise ConfigError("global allocation needs kv_group attention units (q_head keeps the same heads in every KV group)")
    bias_modules = parse_bias_modules(bias_modules)
    info, n_layers = model.info, model.info.num_layers
    scores = unit_scores(model, stats, attn_unit)
    out: dict[str, dict[str, tuple[tuple[int, ...], ...]]] = {"attn": {}, "ffn": {}}
    counts: dict[str, dict[str, list[int]]] = {"attn": {}, "ffn": {}}
    biases: dict[str, torch.Tensor] = {}
    ladders = {"attn": tuple(widths if attn_widths is None else attn_widths), "ffn": tuple(widths)}
    for module, per_layer in (("attn", scores.attn), ("ffn", scores.ffn)):
        for w in (x for x in ladders[module] if x != 1.0):
            key = format_width(w)
            k = kept_attn_units(info, w, attn_unit) if module == "attn" else kept_ffn_channels(info, w)
            if module == "attn" and attn_unit == "q_head":
                kept = [top_heads_per_group(s, info, k) for s in per_layer]
            elif allocation == "uniform":
                kept = [top_units(s, k) for s in per_layer]
            else:
                cost = unit_param_cost(info, module, attn_unit)
                kept = global_allocation(per_layer, cost, cost * k * n_layers)
            out[module][key] = tuple(kept)
            counts[module][key] = [len(x) for x in kept]
            if module not in bias_modules:
                continue
            for i in range(n_layers):
                lin = model.elastic_linears(i)
                if module == "attn":
                    cols = q_rows(heads_of_units(kept[i], info, attn_unit)[0], info)
                    biases[bias_key("attn", w, i)] = compensation_bias(lin["o_proj"].base.weight, stats.attn[i].mean, cols)
                else:
                    ch = torch.tensor(kept[i], dtype=torch.long)
                    biases[bias_key("ffn", w, i)] = compensation_bias(lin["down_proj"].base.weight, stats.ffn[i].mean, ch)
    return WidthSelection(out["attn"], out["ffn"], biases, counts)
