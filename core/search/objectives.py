"""Objective plugins: what a query maximises, which constraints it needs, and the axes of its Pareto front.

An ``Objective`` scores a ``ShapeResult`` (higher is better: ``direction = "maximize"``), breaks ties between
equal scores (``rank``), checks that a budget carries the constraints it needs (``validate``) and names the
minimised quantities its front spans (``axes``). Objectives are registered by name in ``OBJECTIVES`` and loaded
lazily (``get_objective``). Adding one = a class here (or in any module) + one registry line.
"""

from __future__ import annotations

import math
from abc import ABC
from collections.abc import Iterable, Sequence
from typing import ClassVar, Literal

from core.errors import ConfigError
from core.registry import Registry, subclass_of
from core.search.query import Budget, ShapeResult

OBJECTIVES: Registry[type[Objective]] = Registry("objective", {
    "accuracy": "core.search.objectives:AccuracyUnderLatency",
    "memory_latency": "core.search.objectives:AccuracyUnderMemoryAndLatency",
}, subclass_of("core.search.objectives:Objective"))


def axis_value(r: ShapeResult, axis: str) -> float:
    """A minimised quantity of ``r``: ``latency_ms`` (the budget's metric), ``tpot_ms``, ``ttft_ms``, ``e2e_ms`` or ``peak_mem_mb``."""
    v = {"latency_ms": r.latency_ms, "tpot_ms": r.tpot_ms, "ttft_ms": r.ttft_ms, "e2e_ms": r.e2e_ms, "peak_mem_mb": r.peak_mem_mb}.get(axis, math.nan)
    if v is None or not math.isfinite(v):
        raise ConfigError(f"shape {r.shape} has no finite {axis} (needed by the objective's Pareto axes)")
    return float(v)


class Objective(ABC):
    """Maximise ``score`` subject to a ``Budget``; the Pareto front spans ``score`` and ``axes`` (all minimised)."""

    name: ClassVar[str]
    direction: ClassVar[Literal["maximize"]] = "maximize"
    axes: ClassVar[tuple[str, ...]] = ("latency_ms",)

    def validate(self, budget: Budget) -> None:
        """Raise ``ConfigError`` when ``budget`` lacks a constraint this objective needs (none by default)."""
        return None

    def score(self, r: ShapeResult) -> float:
        """Higher is better; the accuracy of the shape (``-inf`` when unknown)."""
        return r.accuracy if r.accuracy is not None else -math.inf

    def rank(self, r: ShapeResult) -> tuple[float | str, ...]:
        """Sort key of the best answer: highest score, then each axis ascending, then the shape key."""
        return (-self.score(r), *(axis_value(r, a) for a in self.axes), r.shape)

    def best(self, results: Iterable[ShapeResult]) -> ShapeResult | None:
        known = [r for r in results if r.accuracy is not None]
        return min(known, key=self.rank) if known else None

    def front(self, points: Iterable[ShapeResult]) -> list[ShapeResult]:
        """Non-dominated points over (score, axes), ordered by the first axis (then score, shape)."""
        from core.search.pareto import pareto_front

        pts = list(points)
        if self.axes == ("latency_ms",):
            return pareto_front(pts)
        uniq = {p.shape: p for p in pts if p.accuracy is not None}
        vecs = {k: (-self.score(p), *(axis_value(p, a) for a in self.axes)) for k, p in uniq.items()}
        keep = [p for k, p in uniq.items() if not any(_dominates(vecs[o], vecs[k]) for o in uniq if o != k)]
        return sorted(keep, key=lambda p: (axis_value(p, self.axes[0]), -self.score(p), p.shape))


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


class AccuracyUnderLatency(Objective):
    """The most accurate shape within the latency budget (and the optional memory cap / extra limits)."""

    name = "accuracy"
    axes = ("latency_ms",)


class AccuracyUnderMemoryAndLatency(Objective):
    """The most accurate shape within a latency budget *and* a peak-memory budget; ties go to the smaller
    peak memory; the front spans accuracy, latency and peak memory."""

    name = "memory_latency"
    axes = ("peak_mem_mb", "latency_ms")

    def validate(self, budget: Budget) -> None:
        if budget.memory_mb is None and "peak_mem_mb" not in dict(budget.limits):
            raise ConfigError("objective 'memory_latency' needs a memory budget (memory_mb)")


def get_objective(name: str) -> Objective:
    """The objective registered as ``name`` (``ConfigError`` listing the known ones)."""
    obj: Objective = OBJECTIVES.load(name)()
    return obj
