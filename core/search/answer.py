"""Answer a query: range check, search (exhaustive or Optuna), Pareto front and neighbours of the answer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from core.errors import ConfigError
from core.latency import LatencyMetric
from core.search.accuracy import AccuracySource
from core.search.exhaustive import exhaustive_search
from core.search.optuna_search import OptunaConfig, optuna_search
from core.search.pareto import neighbours, pareto_front
from core.search.query import Answer, Budget, Found, Method, SearchOutcome, ShapeResult, check_budget
from core.search.shapes import LatencyView, SearchSpace, Shape

FRONT_ENUMERATION_LIMIT = 20_000
"""Spaces larger than this are not enumerated for the front (only the uniform shapes and evaluated ones are)."""


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


def answer_query(
    space: SearchSpace, view: LatencyView, source: AccuracySource, budget: Budget, *, method: Method = "exhaustive",
    optuna: OptunaConfig | None = None, k_neighbours: int = 2, attrs: Mapping[str, Any] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> Answer:
    """The most accurate feasible shape of ``space`` under ``budget``, or ``Infeasible``.

    The budget is checked against the profiled range first (no accuracy is evaluated for an infeasible query).
    ``method="exhaustive"`` evaluates every feasible shape (exact); ``"optuna"`` runs ``optuna.n_trials`` trials.
    The front covers the evaluated shapes plus every in-range shape whose accuracy is already known.
    """
    t0 = time.perf_counter()
    infeasible = check_budget(space.base, view, budget)
    if infeasible is not None:
        return infeasible
    ev0 = source.evaluations
    notes: list[str] = []
    if method == "exhaustive":
        outcome = exhaustive_search(space, view, source, budget, on_step)
    elif method == "optuna":
        cfg = optuna or OptunaConfig()
        outcome = optuna_search(space, view, source, budget, cfg, attrs=attrs, on_trial=on_step)
        if outcome.best is None:
            outcome = _fallback(space, view, source, budget, outcome)
            notes.append(f"optuna found no feasible shape in {outcome.trials} trials; answered with the fastest feasible shape")
    else:
        raise ConfigError(f"search method must be 'exhaustive' or 'optuna', got {method!r}")
    assert outcome.best is not None  # the range check guarantees a feasible shape exists
    universe: Iterable[Shape] = space if len(space) <= FRONT_ENUMERATION_LIMIT else space.base
    known, complete = known_points(universe, view, source, budget.metric)
    front = pareto_front(known + outcome.evaluated)
    if len(space) > FRONT_ENUMERATION_LIMIT:
        complete = False
        notes.append(f"space of {len(space)} shapes: the front covers the uniform shapes and the evaluated ones")
    near = neighbours(front, outcome.best.latency_ms, k_neighbours, exclude=outcome.best.shape)
    return Found(budget, outcome.best, near, front, complete, method, source.evaluations - ev0, outcome.trials, time.perf_counter() - t0, notes=notes)


def _fallback(space: SearchSpace, view: LatencyView, source: AccuracySource, budget: Budget, outcome: SearchOutcome) -> SearchOutcome:
    """Evaluate the fastest feasible uniform shape (it exists: the range check passed)."""
    g = view.gen_len
    feas = [(s, e) for s in space.base if budget.feasible(e := view.estimate(s), g)]
    s, e = min(feas, key=lambda se: (se[1].value(budget.metric, g), se[0].key))
    best = ShapeResult.of(s, e, budget.metric, g, source.accuracy(s))
    return SearchOutcome(best, [*outcome.evaluated, best], outcome.trials)
