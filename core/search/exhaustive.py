"""Exhaustive search as a function: the exact answer for enumerable spaces (``searchers.ExhaustiveSearcher``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from core.search.accuracy import AccuracySource
from core.search.query import Budget, SearchOutcome
from core.search.shapes import LatencyView, Shape


def exhaustive_search(
    shapes: Iterable[Shape], view: LatencyView, source: AccuracySource, budget: Budget, on_step: Callable[[int, int], None] | None = None
) -> SearchOutcome:
    """Evaluate the accuracy of every feasible shape (latency is cheap, accuracy is not) and take the best.

    Infeasible and out-of-range shapes are never evaluated nor returned. Ties: see ``core.search.query.rank``.
    """
    from core.search.objectives import get_objective
    from core.search.searchers import ExhaustiveSearcher, Problem

    g = view.gen_len
    feasible = [(s, e) for s in shapes if budget.feasible(e := view.estimate(s), g)]
    problem = Problem(None, view, source, budget, get_objective("accuracy"), feasible, on_step=on_step)  # type: ignore[arg-type]
    return ExhaustiveSearcher().search(problem)
