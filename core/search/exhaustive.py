"""Exhaustive search: the exact answer for enumerable spaces, and the reference Optuna is checked against."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from core.search.accuracy import AccuracySource
from core.search.query import Budget, SearchOutcome, ShapeResult, best_of
from core.search.shapes import LatencyView, Shape


def exhaustive_search(
    shapes: Iterable[Shape], view: LatencyView, source: AccuracySource, budget: Budget, on_step: Callable[[int, int], None] | None = None
) -> SearchOutcome:
    """Evaluate the accuracy of every feasible shape (latency is cheap, accuracy is not) and take the best.

    Infeasible and out-of-range shapes are never evaluated nor returned. Ties: see ``core.search.query.rank``.
    """
    g = view.gen_len
    feasible = [(s, e) for s in shapes if budget.feasible(e := view.estimate(s), g)]
    evaluated = []
    for i, (s, e) in enumerate(feasible):
        evaluated.append(ShapeResult.of(s, e, budget.metric, g, source.accuracy(s)))
        if on_step is not None:
            on_step(i + 1, len(feasible))
    return SearchOutcome(best_of(evaluated), evaluated, len(feasible))
