"""Pareto fronts (accuracy up, latency down) on hand-made cases: ties, duplicates, bad input, neighbours."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from core.errors import ConfigError
from core.search.pareto import dominates, neighbours, pareto_front


@dataclass(frozen=True)
class P:
    shape: str
    accuracy: float | None
    latency_ms: float


def keys(points: list[P]) -> list[str]:
    return [p.shape for p in points]


def test_simple_front_sorted_by_latency() -> None:
    pts = [P("c", 0.9, 30), P("a", 0.5, 10), P("b", 0.7, 20), P("x", 0.6, 25), P("y", 0.4, 15)]
    assert keys(pareto_front(pts)) == ["a", "b", "c"]


def test_single_point_and_empty() -> None:
    assert keys(pareto_front([P("a", 0.1, 1.0)])) == ["a"]
    assert pareto_front([]) == []


def test_equal_latency_keeps_only_the_most_accurate() -> None:
    pts = [P("a", 0.5, 10), P("b", 0.6, 10), P("c", 0.55, 10)]
    assert keys(pareto_front(pts)) == ["b"]


def test_equal_accuracy_keeps_only_the_fastest() -> None:
    pts = [P("a", 0.5, 12), P("b", 0.5, 10), P("c", 0.5, 11)]
    assert keys(pareto_front(pts)) == ["b"]


def test_exact_ties_of_different_shapes_all_stay() -> None:
    pts = [P("b", 0.5, 10), P("a", 0.5, 10), P("c", 0.7, 20), P("d", 0.4, 10)]
    assert keys(pareto_front(pts)) == ["a", "b", "c"]


def test_repeated_shape_is_merged_and_conflicts_raise() -> None:
    pts = [P("a", 0.5, 10), P("a", 0.5, 10), P("b", 0.6, 20)]
    assert keys(pareto_front(pts)) == ["a", "b"]
    with pytest.raises(ConfigError, match="shape a appears twice"):
        pareto_front([P("a", 0.5, 10), P("a", 0.6, 10)])


@pytest.mark.parametrize("bad", [P("a", None, 1.0), P("a", float("nan"), 1.0), P("a", 0.5, float("inf"))])
def test_non_finite_points_raise(bad: P) -> None:
    with pytest.raises(ConfigError, match="Pareto point a"):
        pareto_front([bad])


def test_front_points_are_mutually_non_dominated_and_dominate_the_rest() -> None:
    import random

    rng = random.Random(3)
    pts = [P(f"s{i}", round(rng.random(), 2), float(rng.randint(1, 20))) for i in range(200)]
    front = pareto_front(pts)
    for p in front:
        assert not any(dominates(q, p) for q in pts)
    for p in set(pts) - set(front):
        assert any(dominates(q, p) for q in front)


def test_neighbours_on_each_side() -> None:
    front = [P(k, 0.1 * i, 10.0 * i) for i, k in enumerate("abcdef", start=1)]
    assert keys(neighbours(front, 30.0, k=2, exclude="c")) == ["a", "b", "d", "e"]
    assert keys(neighbours(front, 10.0, k=2, exclude="a")) == ["b", "c"]
    assert keys(neighbours(front, 60.0, k=1, exclude="f")) == ["e"]
    assert neighbours(front, 30.0, k=0) == []
    with pytest.raises(ConfigError, match="neighbour count"):
        neighbours(front, 30.0, k=-1)
