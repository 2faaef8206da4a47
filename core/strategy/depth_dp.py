"""Stage 1 depth (DESIGN §2.1): which layers every depth keeps, by dynamic programming over removal sets.

Two halves: ``depth_dp`` is the pure DP and works with any ``RemovalScorer``; ``ModelScorer`` scores a removal
set by running an ``ElasticModel`` on calibration data, caching the hidden states below the layers the DP can
still change (the prefix-activation cache). ``exhaustive_depth`` is the brute-force reference for small models.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from core.elastic.model import ElasticModel, ForwardContext
from core.errors import ConfigError
from core.strategy.config import check_depth_range


class RemovalScorer(Protocol):
    """Scores the dense model with some layers removed. Lower is better (a loss; accuracy metrics return 1 − acc)."""

    def score(self, removed: frozenset[int], intact_below: int) -> float:
        """Loss without the layers ``removed``; every layer with index < ``intact_below`` is kept (a caching hint)."""
        ...


@dataclass(frozen=True)
class DepthResult:
    """Kept layers (ascending, original indices) and the scorer's loss for every depth in [min_layers, L].

    ``beams[d]``: with ``beam > 1``, the best ``beam`` kept-layer sets the DP reached for depth d with their
    losses, best first (``kept[d]`` is the first); empty for the plain DP.
    """

    kept: dict[int, tuple[int, ...]]
    scores: dict[int, float]
    evaluations: int
    beams: dict[int, list[tuple[tuple[int, ...], float]]] = field(default_factory=dict)


def _finite(x: float) -> float:
    """Non-finite losses count as the worst possible."""
    return x if math.isfinite(x) else math.inf


Entry = tuple[frozenset[int], float]


@dataclass(frozen=True)
class DPState:
    """The DP after step ``n``: ``best[m]`` = the kept entries of best[n][m]; enough to resume (``to_json`` /
    ``from_json`` round-trip; losses of ``inf`` are stored as ``null``)."""

    n: int
    best: dict[int, list[Entry]]
    evaluations: int
    full_score: float | None
    settings: dict[str, int]

    def to_json(self) -> dict[str, object]:
        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {"n": self.n, "evaluations": self.evaluations, "full_score": self.full_score, "settings": self.settings,
                "best": {str(m): [[sorted(r), num(loss)] for r, loss in es] for m, es in self.best.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DPState:
        best = {int(m): [(frozenset(int(i) for i in r), math.inf if loss is None else float(loss)) for r, loss in es]
                for m, es in d["best"].items()}
        return cls(int(d["n"]), best, int(d["evaluations"]), d["full_score"], dict(d["settings"]))


def _best(candidates: list[Entry], beam: int) -> list[Entry]:
    """The ``beam`` lowest-loss distinct sets; a stable sort, so on equal losses earlier candidates win."""
    out: list[Entry] = []
    for e in sorted(candidates, key=lambda e: e[1]):
        if all(e[0] != o[0] for o in out):
            out.append(e)
        if len(out) == beam:
            break
    return out


def depth_dp(
    num_layers: int,
    min_layers: int,
    keep_last: int,
    scorer: RemovalScorer,
    *,
    score_full: bool = True,
    on_step: Callable[[int, int], None] | None = None,
    beam: int = 1,
    resume: DPState | None = None,
    on_state: Callable[[DPState], None] | None = None,
) -> DepthResult:
    """best[n][m]: best set of m removed layers among the n top-most candidates (layers below them intact).

    Candidates are layers 0..N−1 with N = L − keep_last, visited top-down (step n looks at layer N − n). Removing
    layer N − n costs one scorer call; keeping it reuses best[n−1][m] (free, infeasible when m = n). Ties keep
    the earlier entry (``keep``). About M·N scorer calls for M = L − min_layers; ``score_full`` adds one first call
    for the dense model. ``on_step(n, N)`` is called after each step.

    ``beam`` > 1 keeps the ``beam`` best sets per state instead of one (about ``beam`` × the scorer calls), so a
    caller can choose among several good sets per depth on other data (``DepthResult.beams``).

    ``on_state(state)`` gets the DP after every step; ``resume`` continues from such a state (same settings,
    else ``ConfigError``), so a DP of hours survives a stop. The result equals an uninterrupted run's.
    """
    check_depth_range(num_layers, min_layers, keep_last)
    if beam < 1:
        raise ConfigError(f"beam must be >= 1, got {beam}")
    n_cand, max_rm = num_layers - keep_last, num_layers - min_layers
    settings = {"num_layers": num_layers, "min_layers": min_layers, "keep_last": keep_last, "beam": beam, "score_full": int(score_full)}
    evaluations = 0
    scores: dict[int, float] = {}
    # prev[m] = the best entries (removed set, loss) of best[n-1][m]; best[n][0] (nothing removed) needs no score.
    prev: dict[int, list[Entry]] = {0: [(frozenset(), math.nan)]}
    first = 1
    if resume is not None:
        if resume.settings != settings:
            raise ConfigError(f"cannot resume a DP made with {resume.settings} as {settings}")
        first, prev, evaluations = resume.n + 1, {m: list(es) for m, es in resume.best.items()}, resume.evaluations
        if resume.full_score is not None:
            scores[num_layers] = resume.full_score
    elif score_full:  # first: a cached scorer fills its prefix states of every boundary in this one dense pass
        scores[num_layers] = _finite(scorer.score(frozenset(), intact_below=num_layers))
        evaluations += 1
    for n in range(first, n_cand + 1):
        layer = n_cand - n
        cur: dict[int, list[Entry]] = {0: prev[0]}
        for m in range(1, min(n, max_rm) + 1):
            keep = prev.get(m, []) if m < n else []
            removed = []
            for base, _ in prev[m - 1]:
                removed.append((base | {layer}, _finite(scorer.score(base | {layer}, intact_below=layer))))
                evaluations += 1
            cur[m] = _best(keep + removed, beam)
        prev = cur
        if on_state is not None:
            on_state(DPState(n, prev, evaluations, scores.get(num_layers), settings))
        if on_step is not None:
            on_step(n, n_cand)

    def kept_of(removed: frozenset[int]) -> tuple[int, ...]:
        return tuple(i for i in range(num_layers) if i not in removed)

    kept = {num_layers - m: kept_of(prev[m][0][0]) for m in range(0, max_rm + 1)}
    scores.update({num_layers - m: prev[m][0][1] for m in range(1, max_rm + 1)})
    beams = {num_layers - m: [(kept_of(r), loss) for r, loss in prev[m]] for m in range(1, max_rm + 1)} if beam > 1 else {}
    return DepthResult(kept=dict(sorted(kept.items())), scores=dict(sorted(scores.items())), evaluations=evaluations, beams=beams)


def dp_evaluations(num_layers: int, min_layers: int, keep_last: int) -> int:
    """Scorer calls of ``depth_dp`` without ``score_full``: Σ_{n=1..N} min(n, M)."""
    n_cand, max_rm = num_layers - keep_last, num_layers - min_layers
    return sum(min(n, max_rm) for n in range(1, n_cand + 1))


def exhaustive_depth(num_layers: int, min_layers: int, keep_last: int, score: Callable[[frozenset[int]], float]) -> DepthResult:
    """Brute force over every removal set (reference for small L): the best loss per depth, first found on ties."""
    check_depth_range(num_layers, min_layers, keep_last)
    cands = range(num_layers - keep_last)
    kept: dict[int, tuple[int, ...]] = {num_layers: tuple(range(num_layers))}
    scores: dict[int, float] = {}
    evaluations = 0
    for m in range(1, num_layers - min_layers + 1):
        best: tuple[frozenset[int], float] | None = None
        for combo in itertools.combinations(cands, m):
            loss = _finite(score(frozenset(combo)))
            evaluations += 1
            if best is None or loss < best[1]:
                best = (frozenset(combo), loss)
        assert best is not None
        kept[num_layers - m] = tuple(i for i in range(num_layers) if i not in best[0])
        scores[num_layers - m] = best[1]
    return DepthResult(kept=dict(sorted(kept.items())), scores=dict(sorted(scores.items())), evaluations=evaluations)


# ---- model scoring ---------------------------------------------------------------------------------------


class CalibrationMetric(Protocol):
    """A loss measured from the final hidden states of fixed input batches (lower is better).

    ``NextTokenNLL`` is the default; a multiple-choice metric fits the same interface (its batches hold the
    option continuations, ``batch_loss`` returns (wrong answers, questions)).
    """

    name: str

    def batches(self) -> Sequence[torch.Tensor]:
        """Input ids ``[B, T]`` of every batch (fixed, so that every removal set sees the same data)."""
        ...

    def batch_loss(self, model: ElasticModel, hidden: torch.Tensor, index: int) -> tuple[float, float]:
        """(summed loss, weight) of batch ``index`` from its final hidden states ``[B, T, H]``."""
        ...

    def layout(self, index: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Additive 4D attention mask ``[B, 1, T, T]`` and positions ``[B, T]`` of batch ``index``
        (``None, None``: plain causal attention from position 0; packed multiple-choice rows need their own)."""
        ...


class NextTokenNLL:
    """Mean next-token negative log-likelihood (nats per token) over calibration windows ``[W, T]``."""

    name = "nll"

    def __init__(self, windows: torch.Tensor, batch_size: int = 8) -> None:
        if windows.dim() != 2 or windows.shape[1] < 2 or windows.shape[0] < 1:
            raise ConfigError(f"calibration windows must be [num_windows >= 1, window >= 2], got {tuple(windows.shape)}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self._batches = list(windows.long().split(batch_size))

    def batches(self) -> Sequence[torch.Tensor]:
        return self._batches

    def layout(self, index: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return None, None

    def batch_loss(self, model: ElasticModel, hidden: torch.Tensor, index: int) -> tuple[float, float]:
        ids = self._batches[index]
        logits = model.logits(hidden)[:, :-1].float()
        target = ids[:, 1:].to(logits.device)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum")
        return float(nll), float(target.numel())


def _on(layout: tuple[torch.Tensor | None, torch.Tensor | None], like: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A metric's (mask, positions) on the device of ``like``; the mask in its dtype."""
    mask, pos = layout
    return (None if mask is None else mask.to(device=like.device, dtype=like.dtype), None if pos is None else pos.to(like.device))


class ModelScorer:
    """``RemovalScorer`` on an ``ElasticModel`` at its active widths (the recipe uses full width).

    With ``use_cache`` the hidden states entering layer ``intact_below`` are computed once and reused by every
    removal set of that DP step; one dense pass (the DP's first call) fills the states of all boundaries.
    Counters (layer × sequence units): ``layer_forwards`` actually run, ``layer_forwards_uncached`` that running
    every evaluation from the embeddings would have cost.
    """

    def __init__(self, model: ElasticModel, metric: CalibrationMetric, *, use_cache: bool = True) -> None:
        self.model, self.metric, self.use_cache = model, metric, use_cache
        self.num_layers = model.info.num_layers
        self.layer_forwards = 0
        self.layer_forwards_uncached = 0
        self.evaluations = 0
        dev = model.hf.lm_head.weight.device
        with torch.no_grad():
            embeds = [model.embed(ids.to(dev)) for ids in metric.batches()]
            self._inputs: list[tuple[torch.Tensor, ForwardContext]] = [(h, model.context(h, *_on(metric.layout(i), h))) for i, h in enumerate(embeds)]
        self._states: dict[int, list[torch.Tensor]] = {0: [h for h, _ in self._inputs]}

    def _prefix_states(self, boundary: int) -> list[torch.Tensor]:
        """Hidden states entering layer ``boundary`` for every batch.

        Computed layer by layer from the nearest stored lower boundary, storing every state on the way; states
        above ``boundary`` are dropped (the DP only moves down). Memory: up to L + 1 copies of ``[W, T, H]``.
        """
        if boundary not in self._states:
            base = max(b for b in self._states if b < boundary)
            cur = self._states[base]
            for layer in range(base, boundary):
                cur = [self.model.run_layers(h, [layer], ctx) for h, (_, ctx) in zip(cur, self._inputs, strict=True)]
                self.layer_forwards += sum(h.shape[0] for h in cur)
                self._states[layer + 1] = cur
        for b in [b for b in self._states if b > boundary]:
            del self._states[b]
        return self._states[boundary]

    def score(self, removed: frozenset[int], intact_below: int) -> float:
        """Metric loss of the model without ``removed`` (all of which must be ≥ ``intact_below``)."""
        if any(not 0 <= i < self.num_layers for i in removed):
            raise ConfigError(f"removed layers {sorted(removed)} out of range for {self.num_layers} layers")
        if removed and min(removed) < intact_below:
            raise ConfigError(f"layer {min(removed)} is removed but below intact_below={intact_below}")
        total, weight = 0.0, 0.0
        with torch.no_grad():
            if self.use_cache:
                starts = self._prefix_states(intact_below)
                above = [i for i in range(intact_below, self.num_layers) if i not in removed]
            else:
                starts = [h for h, _ in self._inputs]
                above = [i for i in range(self.num_layers) if i not in removed]
            for b, (start, (_, ctx)) in enumerate(zip(starts, self._inputs, strict=True)):
                hidden = self.model.run_layers(start, above, ctx)
                self.layer_forwards += len(above) * start.shape[0]
                self.layer_forwards_uncached += (self.num_layers - len(removed)) * start.shape[0]
                s, w = self.metric.batch_loss(self.model, hidden, b)
                total, weight = total + s, weight + w
        self.evaluations += 1
        return total / weight
