"""Adaptive profiling: measure a small space-filling design, fit, then add the shapes the fit is least sure about.

1. initial design: the corners of the (depth, attention, MLP) box plus greedy maximin points (``initial`` shapes);
2. fit the predictor's methods and score them by repeated k-fold CV on the measured shapes;
3. the cross-validated uncertainty of an unmeasured candidate = the relative spread (std / mean) of the
   predictions of the models fitted inside CV (each without one fold), worst of TTFT and TPOT; pick the
   ``batch`` most uncertain candidates, spread apart (a candidate's score is damped near shapes already picked);
4. measure that batch with the shared protocol, refit; stop when the held-out error target is met (MAPE and the
   share within ±10 %, TTFT and TPOT), the wall-time budget is spent, or no candidate is left.

``adaptive_profile`` only needs a ``measure(batch) -> Measurement`` callable, so it runs live (``run_adaptive``) or
replays a measured full grid (``replay``: the benchmark against the full grid, with each shape's recorded cost).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.errors import ConfigError
from core.spec import SubnetSpec
from profilers.dims import ShapeDims
from profilers.predictor.features import normalised
from profilers.predictor.fit import FITTERS, METHODS, cross_validate, fold_models
from profilers.predictor.model import design
from profilers.protocol import Measurement
from profilers.table import ModelFacts, ProfileRow
from profilers.workload import Workload

#: the two quantities adaptive profiling must predict to the target (peak memory is fitted afterwards as usual)
ADAPTIVE_TARGETS = {"ttft_ms": "prefill", "tpot_ms": "decode"}


@dataclass(frozen=True)
class AdaptiveOptions:
    """Stop rule and step sizes. ``budget_s``: wall seconds for measuring (preparing, opening, generating)."""

    budget_s: float
    target_mape_pct: float = 5.0
    target_within_10pct: float = 0.95
    initial: int = 10
    batch: int = 4
    max_shapes: int | None = None
    folds: int = 5
    repeats: int = 2

    def __post_init__(self) -> None:
        if self.budget_s <= 0 or self.initial < 6 or self.batch < 1:
            raise ConfigError(f"adaptive profiling needs budget_s > 0, initial >= 6 (the predictor's minimum), batch >= 1 (got {self})")


@dataclass(frozen=True)
class Step:
    """State after one measured batch: shapes so far, elapsed measuring time, CV error per target (best method)."""

    shapes: int
    elapsed_s: float
    cv: dict[str, dict[str, float]]
    added: list[str]


@dataclass
class AdaptiveResult:
    """The measured rows (in measuring order), every step, why it stopped, and the measurements (for the floor)."""

    rows: list[ProfileRow]
    steps: list[Step]
    stop_reason: str
    measurements: list[Measurement] = field(default_factory=list)

    @property
    def met_target(self) -> bool:
        return self.stop_reason == "target met"


def _coords(m: ModelFacts, dims: Sequence[ShapeDims]) -> np.ndarray:
    return np.stack([normalised(m, d) for d in dims])


def initial_design(m: ModelFacts, candidates: Sequence[SubnetSpec], dims: Sequence[ShapeDims], n: int) -> list[int]:
    """Indices of ``n`` candidates: the box corners (largest / smallest depth × attention × MLP) then greedy maximin."""
    P = _coords(m, dims)
    chosen: list[int] = []
    depth, attn, ffn = P[:, 0], P[:, 1] + P[:, 2], P[:, 3]
    for dsel in (depth.max(), depth.min()):
        for asel in (attn.max(), attn.min()):
            for fsel in (ffn.max(), ffn.min()):
                dist = np.abs(depth - dsel) + np.abs(attn - asel) + np.abs(ffn - fsel)
                i = int(np.argmin(dist))
                if i not in chosen:
                    chosen.append(i)
    chosen = chosen[:n]
    while len(chosen) < min(n, len(candidates)):
        d = np.min(np.linalg.norm(P[:, None, :] - P[chosen][None, :, :], axis=2), axis=1)
        d[chosen] = -1
        chosen.append(int(np.argmax(d)))
    return chosen


def cv_scores(m: ModelFacts, wl: Workload, rows: Sequence[ProfileRow], *, folds: int, repeats: int) -> dict[str, dict[str, float | str]]:
    """Per target: the best method's held-out MAPE / share within ±10 % on ``rows``."""
    dims = [r.dims().resolved(m.num_heads, m.num_kv_heads) for r in rows]
    out: dict[str, dict[str, float | str]] = {}
    for target, kind in ADAPTIVE_TARGETS.items():
        y = np.array([getattr(r, target).median for r in rows], dtype=float)
        X, P = design(m, wl, dims, kind)
        best = None
        for name in METHODS:
            h = cross_validate(FITTERS[name], X, P, y, folds=folds, repeats=repeats)
            if best is None or h.mape_pct < best[1].mape_pct:
                best = (name, h)
        assert best is not None
        out[target] = {"method": best[0], "mape_pct": round(best[1].mape_pct, 3), "within_10pct": round(best[1].within_10pct, 4)}
    return out


def uncertainty(m: ModelFacts, wl: Workload, rows: Sequence[ProfileRow], cand_dims: Sequence[ShapeDims], methods: dict[str, str],
                *, folds: int, repeats: int) -> np.ndarray:
    """Relative spread of the CV fold models' predictions at each candidate (worst target)."""
    dims = [r.dims().resolved(m.num_heads, m.num_kv_heads) for r in rows]
    score = np.zeros(len(cand_dims))
    for target, kind in ADAPTIVE_TARGETS.items():
        y = np.array([getattr(r, target).median for r in rows], dtype=float)
        X, P = design(m, wl, dims, kind)
        Xq, Pq = design(m, wl, list(cand_dims), kind)
        preds = np.stack([f(Xq, Pq) for f in fold_models(FITTERS[methods[target]], X, P, y, folds=folds, repeats=repeats)])
        rel = preds.std(axis=0) / np.maximum(np.abs(preds.mean(axis=0)), 1e-9)
        score = np.maximum(score, rel)
    return score


def pick_batch(scores: np.ndarray, P: np.ndarray, k: int, radius: float = 0.15) -> list[int]:
    """The ``k`` highest scores, each pick damping the scores of candidates within ~``radius`` of it."""
    s = scores.astype(float).copy()
    out: list[int] = []
    for _ in range(min(k, len(s))):
        i = int(np.argmax(s))
        if s[i] < 0:
            break
        out.append(i)
        d = np.linalg.norm(P - P[i], axis=1)
        s *= 1.0 - np.exp(-((d / radius) ** 2))
        s[out] = -1.0
    return out


def adaptive_profile(measure: Callable[[list[SubnetSpec]], Measurement], candidates: Sequence[SubnetSpec], dims_of: Callable[[SubnetSpec], ShapeDims],
                     model: ModelFacts, workload: Workload, opts: AdaptiveOptions, *, clock: Callable[[], float] = time.monotonic,
                     on_step: Callable[[Step], None] | None = None) -> AdaptiveResult:
    """Measure ``candidates`` adaptively (module doc) with ``measure``; ``clock`` gives the elapsed measuring time."""
    cands = list(dict.fromkeys(candidates))
    if len(cands) < opts.initial:
        raise ConfigError(f"adaptive profiling needs at least {opts.initial} candidate shapes, got {len(cands)}")
    cdims = [dims_of(s).resolved(model.num_heads, model.num_kv_heads) for s in cands]
    P = _coords(model, cdims)
    todo = initial_design(model, cands, cdims, opts.initial)
    measured: set[int] = set()
    rows: list[ProfileRow] = []
    steps: list[Step] = []
    ms: list[Measurement] = []
    t0 = clock()
    limit = opts.max_shapes or len(cands)
    reason = "no candidate left"
    while todo:
        m = measure([cands[i] for i in todo])
        ms.append(m)
        rows.extend(m.rows)
        measured.update(todo)
        cv = cv_scores(model, workload, rows, folds=opts.folds, repeats=opts.repeats)
        scores = {k: {kk: float(vv) for kk, vv in v.items() if kk != "method"} for k, v in cv.items()}
        step = Step(len(rows), round(clock() - t0, 3), scores, [cands[i].key for i in todo])
        steps.append(step)
        if on_step:
            on_step(step)
        if all(float(v["mape_pct"]) <= opts.target_mape_pct and float(v["within_10pct"]) >= opts.target_within_10pct for v in cv.values()):
            reason = "target met"
            break
        elapsed = clock() - t0
        per_shape = elapsed / len(rows)
        room = int((opts.budget_s - elapsed) / max(per_shape, 1e-9))
        k = min(opts.batch, room, limit - len(rows))
        if elapsed >= opts.budget_s or room < 1:
            reason = "budget spent"
            break
        if k < 1:
            reason = "max shapes reached"
            break
        left = [i for i in range(len(cands)) if i not in measured]
        if not left:
            break
        methods = {t: str(v["method"]) for t, v in cv.items()}
        sc = uncertainty(model, workload, rows, [cdims[i] for i in left], methods, folds=opts.folds, repeats=opts.repeats)
        todo = [left[j] for j in pick_batch(sc, P[left], k)]
    return AdaptiveResult(rows, steps, reason, ms)


def replay(rows: Sequence[ProfileRow], model: ModelFacts, workload: Workload, opts: AdaptiveOptions) -> AdaptiveResult:
    """Adaptive profiling replayed on an already measured grid: "measuring" a shape returns its row and advances the
    clock by the row's recorded ``measure_s`` (the benchmark against measuring the full grid)."""
    by_key = {r.shape: r for r in rows}
    spent = [0.0]

    def measure(batch: list[SubnetSpec]) -> Measurement:
        from profilers.table import ProtocolFacts

        got = [by_key[s.key] for s in batch]
        spent[0] += sum(r.measure_s or 0.0 for r in got)
        return Measurement(got, ProtocolFacts(passes=1, rounds_per_pass=1, warmup=0, repetitions=1, threads=1), None)

    specs = [r.spec for r in rows]
    dims = {r.shape: r.dims() for r in rows}
    return adaptive_profile(measure, specs, lambda s: dims[s.key], model, workload, opts, clock=lambda: spent[0])
