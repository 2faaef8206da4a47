"""The answer index: for an enumerated space with every accuracy known, the answer to a budget is a lookup.

Built once per (latency fit, checkpoint + accuracy metric, budget metric, objective): the in-range shapes sorted by
the budget metric, the best-so-far under the objective's rank along that order (so a latency-only budget is a
bisection), and the objective's Pareto front (for neighbours). Budgets with more constraints (memory, extra
limits) scan the sorted prefix. The answer is exactly the exhaustive one (checked by the searcher contract suite).
``IndexCache`` keeps a few indexes keyed by the caller's identities; a new fit or checkpoint is a new key.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from core.errors import ConfigError
from core.latency import LatencyEstimate, LatencyMetric
from core.search.objectives import Objective
from core.search.pareto import neighbours
from core.search.query import Answer, Budget, Found, Infeasible, ShapeResult, check_budget
from core.search.shapes import LatencyView, SearchSpace, Shape, UniformSpace


@dataclass(frozen=True)
class IndexEntry:
    shape: Shape
    estimate: LatencyEstimate
    result: ShapeResult


class AnswerIndex:
    """Exact answers by lookup for one budget metric over a completely known, enumerated space."""

    def __init__(self, space: SearchSpace, view: LatencyView, metric: LatencyMetric, objective: Objective,
                 rows: Sequence[tuple[Shape, LatencyEstimate, float, float | None]]) -> None:
        """``rows``: every in-range shape with its estimate, accuracy and raw metric value."""
        self.space, self.view, self.metric, self.objective = space, view, metric, objective
        g = view.gen_len
        entries = [IndexEntry(s, e, ShapeResult.of(s, e, metric, g, acc, raw)) for s, e, acc, raw in rows if e.in_range]
        entries.sort(key=lambda x: (x.result.latency_ms, x.result.shape))
        self.entries = entries
        self.latencies = [x.result.latency_ms for x in entries]
        self.prefix_best: list[ShapeResult] = []
        for x in entries:
            prev = self.prefix_best[-1] if self.prefix_best else None
            self.prefix_best.append(x.result if prev is None or objective.rank(x.result) < objective.rank(prev) else prev)
        mems = [x.estimate.peak_mem_mb for x in entries]
        self._min_mem = None if any(m is None for m in mems) or not mems else min(float(m) for m in mems)  # type: ignore[arg-type]
        self._fastest = ShapeResult.of(entries[0].shape, entries[0].estimate, metric, g, None) if entries else None
        self.front = sorted(objective.front([x.result for x in entries]), key=lambda p: (p.latency_ms, -objective.score(p), p.shape))

    def __len__(self) -> int:
        return len(self.entries)

    def best(self, budget: Budget) -> ShapeResult | None:
        """The objective's best feasible shape under ``budget`` (``None`` when none fits)."""
        if budget.metric != self.metric:
            raise ConfigError(f"index for {self.metric} asked a {budget.metric} budget")
        pos = bisect.bisect_right(self.latencies, budget.latency_ms)
        if pos == 0:
            return None
        if budget.memory_mb is None and not budget.limits:
            return self.prefix_best[pos - 1]
        g = self.view.gen_len
        return self.objective.best(x.result for x in self.entries[:pos] if budget.feasible(x.estimate, g))

    def _check(self, budget: Budget) -> Infeasible | None:
        """``check_budget`` over the space; a latency-only budget is one comparison with the fastest shape (the
        entries are every in-range shape of a uniform space, sorted as ``check_budget`` breaks ties)."""
        if budget.memory_mb is not None or budget.limits or self._fastest is None or not isinstance(self.space, UniformSpace):
            return check_budget(self.space.base, self.view, budget)
        f = self._fastest
        if f.latency_ms <= budget.latency_ms:
            return None
        msg = f"{budget.metric} budget {budget.latency_ms:g} ms is below the fastest achievable {f.latency_ms:.3f} ms ({f.shape})"
        return Infeasible(budget, "latency", msg, f.latency_ms, f, self._min_mem)

    def answer(self, budget: Budget, k_neighbours: int = 2) -> Answer:
        """The same answer as an exhaustive search over the space: ``Infeasible`` from the range check, else ``Found``."""
        t0 = time.perf_counter()
        infeasible = self._check(budget)
        if infeasible is not None:
            return infeasible
        best = self.best(budget)
        if best is None:  # the uniform shapes could meet the budget but no enumerated shape does (cannot happen for uniform spaces)
            raise ConfigError("no feasible shape in the index although the range check passed")
        near = neighbours(self.front, best.latency_ms, k_neighbours, exclude=best.shape)
        return Found(budget, best, near, list(self.front), True, "index", 0, 0, time.perf_counter() - t0)


class IndexCache:
    """A small thread-safe LRU of ``AnswerIndex`` by key; ``get_or_build`` builds a missing one once."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._d: OrderedDict[Hashable, AnswerIndex] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0

    def get(self, key: Hashable) -> AnswerIndex | None:
        with self._lock:
            idx = self._d.get(key)
            if idx is not None:
                self._d.move_to_end(key)
            return idx

    def put(self, key: Hashable, index: AnswerIndex) -> None:
        with self._lock:
            self._d[key] = index
            self._d.move_to_end(key)
            self.builds += 1
            while len(self._d) > self.max_entries:
                self._d.popitem(last=False)

    def get_or_build(self, key: Hashable, build: Callable[[], AnswerIndex | None]) -> AnswerIndex | None:
        idx = self.get(key)
        if idx is None:
            idx = build()
            if idx is not None:
                self.put(key, idx)
        return idx

    def clear(self) -> None:
        with self._lock:
            self._d.clear()

    def __len__(self) -> int:
        return len(self._d)
