"""Pareto fronts of accuracy (higher is better) against latency (lower is better)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from core.errors import ConfigError


class Point(Protocol):
    """Anything with a shape key, an accuracy and a latency (``ShapeResult`` is one)."""

    @property
    def shape(self) -> str: ...

    @property
    def accuracy(self) -> float | None: ...

    @property
    def latency_ms(self) -> float: ...


P = TypeVar("P", bound=Point)


def _dedupe(points: Iterable[P]) -> list[P]:
    seen: dict[str, P] = {}
    for p in points:
        if p.accuracy is None or not math.isfinite(p.accuracy) or not math.isfinite(p.latency_ms):
            raise ConfigError(f"Pareto point {p.shape}: accuracy and latency must be finite numbers, got {p.accuracy}, {p.latency_ms}")
        old = seen.get(p.shape)
        if old is None:
            seen[p.shape] = p
        elif (old.accuracy, old.latency_ms) != (p.accuracy, p.latency_ms):
            raise ConfigError(f"shape {p.shape} appears twice with different values ({old.accuracy}, {old.latency_ms}) vs ({p.accuracy}, {p.latency_ms})")
    return list(seen.values())


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as good in both objectives and strictly better in one."""
    assert a.accuracy is not None and b.accuracy is not None
    return a.accuracy >= b.accuracy and a.latency_ms <= b.latency_ms and (a.accuracy > b.accuracy or a.latency_ms < b.latency_ms)


def pareto_front(points: Iterable[P]) -> list[P]:
    """Non-dominated points, ordered by latency ascending (then shape key).

    Repeated entries of one shape are merged (conflicting values raise ``ConfigError``). Different shapes with
    exactly equal (accuracy, latency) do not dominate each other, so all of them stay on the front.
    """
    pts = sorted(_dedupe(points), key=lambda p: (p.latency_ms, -p.accuracy, p.shape))  # type: ignore[operator]
    front: list[P] = []
    best = -math.inf
    for p in pts:
        acc = float(p.accuracy)  # type: ignore[arg-type]
        if acc > best:
            front.append(p)
            best = acc
        elif acc == best and front and front[-1].latency_ms == p.latency_ms:
            front.append(p)  # an exact tie with the last front point
    return front


def neighbours(front: Sequence[P], latency_ms: float, k: int = 2, exclude: str | None = None) -> list[P]:
    """Up to ``k`` front points on each side of ``latency_ms`` (the nearest faster and slower ones), by latency."""
    if k < 0:
        raise ConfigError(f"neighbour count must be >= 0, got {k}")
    others = [p for p in front if p.shape != exclude]
    faster = [p for p in others if p.latency_ms <= latency_ms][-k:] if k else []
    slower = [p for p in others if p.latency_ms > latency_ms][:k]
    return faster + slower
