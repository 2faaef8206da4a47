"""Answer a query over a plain accuracy source (a thin wrapper of ``core.search.pipeline``), and Pareto helpers."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from core.latency import LatencyMetric
from core.search.accuracy import AccuracyRecord, AccuracySource
from core.search.optuna_search import OptunaConfig
from core.search.pareto import pareto_front
from core.search.query import Answer, Budget, Method, ShapeResult
from core.search.shapes import LatencyView, SearchSpace, Shape


def known_points(shapes: Iterable[Shape], view: LatencyView, source: AccuracySource, metric: LatencyMetric) -> tuple[list[ShapeResult], bool]:
    """In-range shapes whose accuracy is already known (no evaluation), and whether every in-range shape is known."""
    out, complete = [], True
    for s in shapes:
        est = view.estimate(s)
        if not est.in_range:
            continue
        acc = source.known(s)
        if acc is None:
            complete = False
        else:
            out.append(ShapeResult.of(s, est, metric, view.gen_len, acc))
    return out, complete


def front_of(
    shapes: Iterable[Shape], view: LatencyView, source: AccuracySource, metric: LatencyMetric, on_step: Callable[[int, int], None] | None = None
) -> list[ShapeResult]:
    """The Pareto front over every in-range shape, evaluating accuracies that are not known yet."""
    in_range = [(s, e) for s in shapes if (e := view.estimate(s)).in_range]
    pts = []
    for i, (s, e) in enumerate(in_range):
        pts.append(ShapeResult.of(s, e, metric, view.gen_len, source.accuracy(s)))
        if on_step is not None:
            on_step(i + 1, len(in_range))
    return pareto_front(pts)


class SourceProvider:
    """An ``AccuracyProvider`` over a plain ``AccuracySource`` (synthetic scores, tests): no raw value (NaN)."""

    def __init__(self, source: AccuracySource) -> None:
        self.source = source

    def snapshot(self, shapes: Iterable[Shape]) -> dict[str, AccuracyRecord]:
        return {s.key: AccuracyRecord(a, math.nan, "none") for s in shapes if (a := self.source.known(s)) is not None}

    def record(self, shape: Shape) -> AccuracyRecord:
        a = self.source.accuracy(shape)
        return AccuracyRecord(a, math.nan, "none")


def answer_query(
    space: SearchSpace, view: LatencyView, source: AccuracySource, budget: Budget, *, method: Method = "exhaustive",
    optuna: OptunaConfig | None = None, k_neighbours: int = 2, attrs: Mapping[str, Any] | None = None,
    on_step: Callable[[int, int], None] | None = None, objective: str = "accuracy",
) -> Answer:
    """The most accurate feasible shape of ``space`` under ``budget``, or ``Infeasible``: ``core.search.pipeline.run_query``
    with ``source`` as the accuracy provider (evaluating what is unknown) and the searcher ``method``."""
    from core.search.pipeline import Query, SearchContext, run_query

    provider: Any = source if hasattr(source, "snapshot") and hasattr(source, "record") else SourceProvider(source)
    ctx = SearchContext(space, lambda: view, provider, evaluate=True, attrs=attrs or {}, on_step=on_step)
    return run_query(ctx, Query(budget, objective, method, k_neighbours, optuna))
