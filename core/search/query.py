"""Query vocabulary: a budget, per-shape results, and the two possible answers (``Found`` / ``Infeasible``).

All results are frozen dataclasses with ``to_dict`` / ``from_dict`` (plain JSON types).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from core.errors import ConfigError
from core.latency import LatencyEstimate, LatencyMetric
from core.search.shapes import LatencyView, Shape

Method = str
"""A searcher name from ``core.search.searchers.SEARCHERS`` (``exhaustive``, ``optuna``, ``nsga2``, ``index``)."""
QUANTITIES = ("tpot_ms", "ttft_ms", "e2e_ms", "peak_mem_mb")
"""What a budget can bound (besides its primary latency metric): per-shape predicted quantities, lower is better."""


def quantity(est: LatencyEstimate, name: str, gen_len: int) -> float | None:
    """The predicted ``name`` (one of ``QUANTITIES``) of ``est``; ``None`` when the model reports no memory."""
    if name == "peak_mem_mb":
        return est.peak_mem_mb
    if name in ("tpot_ms", "ttft_ms", "e2e_ms"):
        return est.value(name[:-3], gen_len)  # type: ignore[arg-type]
    raise ConfigError(f"unknown budget quantity {name!r}; known: {', '.join(QUANTITIES)}")


@dataclass(frozen=True)
class Budget:
    """A latency budget on ``metric`` (tpot, ttft or e2e = ttft + (gen_len − 1)·tpot), an optional memory cap, and
    optional further limits (``{"ttft_ms": 80, "e2e_ms": 400}``: every one must hold; keys from ``QUANTITIES``)."""

    latency_ms: float
    metric: LatencyMetric = "tpot"
    memory_mb: float | None = None
    limits: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        raw = self.limits.items() if isinstance(self.limits, Mapping) else self.limits
        try:
            limits = tuple(sorted((str(k), float(v)) for k, v in raw))
        except (TypeError, ValueError):
            raise ConfigError(f"budget limits must map a quantity to a number, got {self.limits!r}") from None
        for k, v in limits:
            if k not in QUANTITIES:
                raise ConfigError(f"unknown budget limit {k!r}; known: {', '.join(QUANTITIES)}")
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"budget limit {k} must be a positive finite number, got {v}")
        if len({k for k, _ in limits}) != len(limits):
            raise ConfigError(f"budget limits name a quantity twice: {limits}")
        object.__setattr__(self, "limits", limits)
        if self.metric not in get_args(LatencyMetric):
            raise ConfigError(f"budget metric must be one of {', '.join(get_args(LatencyMetric))}, got {self.metric!r}")
        if not (math.isfinite(self.latency_ms) and self.latency_ms > 0):
            raise ConfigError(f"latency budget must be a positive number of ms, got {self.latency_ms}")
        if self.memory_mb is not None and not (math.isfinite(self.memory_mb) and self.memory_mb > 0):
            raise ConfigError(f"memory budget must be a positive number of MB, got {self.memory_mb}")

    def memory_of(self, est: LatencyEstimate) -> float | None:
        """Peak memory of ``est``; ``ConfigError`` when a memory budget is set but the latency model has none."""
        if self.memory_mb is not None and est.peak_mem_mb is None:
            raise ConfigError("a memory budget was given but the latency model reports no peak_mem_mb")
        return est.peak_mem_mb

    def violations(self, est: LatencyEstimate, gen_len: int) -> dict[str, float]:
        """Constraint values (feasible when every value is ≤ 0): latency over budget, memory over cap, range."""
        out = {"latency": est.value(self.metric, gen_len) - self.latency_ms, "in_range": 0.0 if est.in_range else 1.0}
        if self.memory_mb is not None:
            out["memory"] = float(self.memory_of(est)) - self.memory_mb  # type: ignore[arg-type]
        for name, limit in self.limits:
            v = quantity(est, name, gen_len)
            if v is None:
                raise ConfigError(f"a {name} limit was given but the latency model reports no {name}")
            out[name] = v - limit
        return out

    def feasible(self, est: LatencyEstimate, gen_len: int) -> bool:
        """In the profiled range, within the latency budget and the memory cap."""
        return all(v <= 0 for v in self.violations(est, gen_len).values())


@dataclass(frozen=True)
class ShapeResult:
    """One shape with its predicted latency (``latency_ms`` is the budget's metric) and accuracy (if known)."""

    shape: str
    num_layers: int
    accuracy: float | None
    latency_ms: float
    ttft_ms: float
    tpot_ms: float
    peak_mem_mb: float | None
    in_range: bool
    e2e_ms: float | None = None
    accuracy_raw: float | None = None
    """The accuracy metric's native value (perplexity for ``ppl``), when known."""

    @classmethod
    def of(cls, shape: Shape, est: LatencyEstimate, metric: LatencyMetric, gen_len: int, accuracy: float | None,
           accuracy_raw: float | None = None) -> ShapeResult:
        """``latency_ms`` is ``est``'s value for ``metric``; ``e2e_ms`` = ttft + (gen_len − 1)·tpot."""
        return cls(shape.key, shape.num_layers, accuracy, est.value(metric, gen_len), est.ttft_ms, est.tpot_ms, est.peak_mem_mb, est.in_range,
                   est.e2e_ms(gen_len), accuracy_raw)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ShapeResult:
        optional = ("e2e_ms", "accuracy_raw")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k not in optional or k in d})


def rank(r: ShapeResult) -> tuple[float, float, str]:
    """Sort key of the best answer: highest accuracy, then lowest latency, then shape key (deterministic)."""
    return (-(r.accuracy if r.accuracy is not None else -math.inf), r.latency_ms, r.shape)


def best_of(results: Iterable[ShapeResult]) -> ShapeResult | None:
    """The best result with a known accuracy under ``rank``, or ``None``."""
    known = [r for r in results if r.accuracy is not None]
    return min(known, key=rank) if known else None


@dataclass(frozen=True)
class SearchOutcome:
    """What one search pass saw: the best feasible result (or ``None``), every evaluated result, trial count."""

    best: ShapeResult | None
    evaluated: list[ShapeResult]
    trials: int


@dataclass(frozen=True)
class Found:
    """The most accurate feasible shape, its Pareto neighbours and the front it was chosen from."""

    budget: Budget
    best: ShapeResult
    neighbours: list[ShapeResult]
    front: list[ShapeResult]
    front_complete: bool
    method: Method
    evaluations: int
    trials: int
    elapsed_s: float
    kind: Literal["found"] = "found"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Infeasible:
    """No shape fits. ``fastest`` is the fastest in-range shape (within the memory cap if one can be met)."""

    budget: Budget
    reason: Literal["latency", "memory", "limits", "out_of_range"]
    message: str
    fastest_latency_ms: float | None
    fastest: ShapeResult | None
    min_peak_mem_mb: float | None
    kind: Literal["infeasible"] = "infeasible"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Answer = Found | Infeasible


def answer_from_dict(d: Mapping[str, Any]) -> Answer:
    """Rebuild an answer from ``to_dict`` output (``ConfigError`` on anything else)."""
    try:
        budget = Budget(**d["budget"])
        if d.get("kind") == "found":
            return Found(
                budget, ShapeResult.from_dict(d["best"]), [ShapeResult.from_dict(x) for x in d["neighbours"]],
                [ShapeResult.from_dict(x) for x in d["front"]], bool(d["front_complete"]), d["method"], int(d["evaluations"]),
                int(d["trials"]), float(d["elapsed_s"]), notes=list(d.get("notes", [])),
            )
        if d.get("kind") == "infeasible":
            fastest = ShapeResult.from_dict(d["fastest"]) if d.get("fastest") else None
            return Infeasible(budget, d["reason"], d["message"], d["fastest_latency_ms"], fastest, d["min_peak_mem_mb"])
    except (KeyError, TypeError) as e:
        raise ConfigError(f"bad search answer: {type(e).__name__}: {e}") from None
    raise ConfigError(f"bad search answer kind {d.get('kind')!r}: expected 'found' or 'infeasible'")


def check_budget(shapes: Iterable[Shape], view: LatencyView, budget: Budget) -> Infeasible | None:
    """Check ``budget`` against the profiled range before searching: ``Infeasible`` if no shape can meet it.

    ``shapes`` must contain the fastest shapes of the space (the uniform shapes do, for grouped spaces too:
    a grouped latency is a weighted mean of uniform ones at the same depth). Out-of-range shapes never count.
    Extra limits are checked jointly over ``shapes``: exact when ``shapes`` is the whole space (the pipeline
    passes it for enumerable spaces); over the uniform shapes of a grouped space it can miss a mixed shape.
    """
    g = view.gen_len
    rows = [(s, view.estimate(s)) for s in shapes]
    in_range = [(s, e) for s, e in rows if e.in_range]
    if not in_range:
        return Infeasible(budget, "out_of_range", f"none of the {len(rows)} shapes lies in the profiled range of the latency model", None, None, None)
    mems = [budget.memory_of(e) for _, e in in_range]
    min_mem = None if any(m is None for m in mems) else min(float(m) for m in mems)  # type: ignore[arg-type]
    fits_mem = [(s, e) for (s, e), m in zip(in_range, mems, strict=True) if budget.memory_mb is None or (m is not None and m <= budget.memory_mb)]
    pool = fits_mem or in_range
    s0, e0 = min(pool, key=lambda se: (se[1].value(budget.metric, g), se[0].key))
    fastest = ShapeResult.of(s0, e0, budget.metric, g, None)
    if not fits_mem:
        msg = f"no shape in the profiled range fits {budget.memory_mb:g} MB; the smallest peak memory is {min_mem:.1f} MB"
        return Infeasible(budget, "memory", msg, fastest.latency_ms, fastest, min_mem)
    if fastest.latency_ms > budget.latency_ms:
        msg = f"{budget.metric} budget {budget.latency_ms:g} ms is below the fastest achievable {fastest.latency_ms:.3f} ms ({fastest.shape})"
        return Infeasible(budget, "latency", msg, fastest.latency_ms, fastest, min_mem)
    if budget.limits and not any(budget.feasible(e, g) for _, e in fits_mem):
        names = ", ".join(f"{k} ≤ {v:g}" for k, v in budget.limits)
        msg = f"no shape in the profiled range meets {budget.metric} ≤ {budget.latency_ms:g} ms together with {names}"
        return Infeasible(budget, "limits", msg, fastest.latency_ms, fastest, min_mem)
    return None
