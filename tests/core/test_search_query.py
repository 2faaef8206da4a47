"""Budgets, the range check, exhaustive search against brute force, answers and their JSON form.

``SyntheticLatency`` / ``synthetic_accuracy`` are shared with the Optuna tests: an affine-in-depth latency
model (as DESIGN §5 predicts) and an accuracy with a seeded per-shape perturbation, so the optimum is not
simply "the biggest shape that fits".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pytest

from core.errors import ConfigError
from core.latency import LatencyEstimate
from core.search.accuracy import FunctionAccuracy
from core.search.answer import answer_query, front_of
from core.search.exhaustive import exhaustive_search
from core.search.query import Budget, Found, Infeasible, ShapeResult, answer_from_dict, check_budget
from core.search.shapes import GroupedShape, LatencyView, Shape, UniformSpace
from core.spec import ShapeSpace, SubnetSpec

SPACE = ShapeSpace(8, 3)  # 6 depths x 4 x 4 widths = 96 shapes


@dataclass
class SyntheticLatency:
    """Latency affine in depth with a width-dependent per-layer cost; ``out_of_range`` shapes are flagged."""

    gen_len: int = 16
    out_of_range: frozenset[str] = frozenset()

    def estimate(self, spec: SubnetSpec) -> LatencyEstimate:
        per = 0.5 + 0.6 * spec.attn_width + 0.9 * spec.ffn_width
        mem = 100.0 + spec.num_layers * (10 * spec.attn_width + 20 * spec.ffn_width)
        return LatencyEstimate(5.0 + 8 * spec.num_layers * per, 1.0 + spec.num_layers * per, mem, spec.key not in self.out_of_range)


def _noise(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 16**8


def synthetic_accuracy(shape: Shape) -> float:
    """Higher for more layers and wider groups, plus a deterministic per-shape perturbation."""
    g = shape if isinstance(shape, GroupedShape) else GroupedShape(shape.num_layers, (shape.attn_width,), (shape.ffn_width,))
    width = sum(size * (0.8 * (1 - a) ** 1.2 + 1.1 * (1 - f) ** 1.1) for size, a, f in zip(g.group_sizes(), g.attn_widths, g.ffn_widths, strict=True))
    return -0.5 * (8 - shape.num_layers) - width / shape.num_layers + 0.15 * _noise(shape.key)


def brute_force(space: UniformSpace, view: LatencyView, budget: Budget) -> ShapeResult:
    best = None
    for s in space:
        e = view.estimate(s)
        fits_memory = budget.memory_mb is None or (e.peak_mem_mb or 0.0) <= budget.memory_mb
        if e.in_range and e.value(budget.metric, view.gen_len) <= budget.latency_ms and fits_memory:
            r = ShapeResult.of(s, e, budget.metric, view.gen_len, synthetic_accuracy(s))
            if best is None or (r.accuracy, -r.latency_ms) > (best.accuracy, -best.latency_ms):
                best = r
    assert best is not None
    return best


def test_budget_validation() -> None:
    with pytest.raises(ConfigError, match="budget metric"):
        Budget(10.0, "latency")  # type: ignore[arg-type]
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="latency budget"):
            Budget(bad)
    with pytest.raises(ConfigError, match="memory budget"):
        Budget(10.0, memory_mb=0)


def test_e2e_budget_uses_gen_len() -> None:
    est = LatencyEstimate(ttft_ms=10.0, tpot_ms=2.0, peak_mem_mb=5.0)
    assert Budget(40.0, "e2e").violations(est, gen_len=16)["latency"] == pytest.approx(10 + 15 * 2 - 40)
    assert Budget(10.0, "ttft").feasible(est, 16) and not Budget(9.9, "ttft").feasible(est, 16)
    assert not Budget(100.0, "tpot").feasible(LatencyEstimate(1.0, 1.0, 1.0, in_range=False), 16)


def test_memory_budget_needs_memory_from_the_latency_model() -> None:
    with pytest.raises(ConfigError, match="no peak_mem_mb"):
        Budget(10.0, memory_mb=100).violations(LatencyEstimate(1.0, 1.0, None), 16)


def test_range_check_names_the_fastest_shape() -> None:
    view = LatencyView(SyntheticLatency())
    fastest = view.estimate(SPACE.smallest).tpot_ms
    inf = check_budget(SPACE, view, Budget(fastest - 0.01))
    assert isinstance(inf, Infeasible) and inf.reason == "latency"
    assert inf.fastest is not None and inf.fastest.shape == SPACE.smallest.key
    assert inf.fastest_latency_ms == pytest.approx(fastest) and "below the fastest achievable" in inf.message
    assert check_budget(SPACE, view, Budget(fastest)) is None


def test_range_check_skips_out_of_range_shapes() -> None:
    view = LatencyView(SyntheticLatency(out_of_range=frozenset({SPACE.smallest.key})))
    inf = check_budget(SPACE, view, Budget(0.01))
    assert isinstance(inf, Infeasible) and inf.fastest is not None and inf.fastest.shape != SPACE.smallest.key
    none_in = LatencyView(SyntheticLatency(out_of_range=frozenset(s.key for s in SPACE)))
    inf = check_budget(SPACE, none_in, Budget(1e9))
    assert isinstance(inf, Infeasible) and inf.reason == "out_of_range" and inf.fastest is None


def test_range_check_memory() -> None:
    view = LatencyView(SyntheticLatency())
    min_mem = view.estimate(SPACE.smallest).peak_mem_mb
    assert min_mem is not None
    inf = check_budget(SPACE, view, Budget(1e9, memory_mb=min_mem - 1))
    assert isinstance(inf, Infeasible) and inf.reason == "memory" and inf.min_peak_mem_mb == pytest.approx(min_mem)
    assert check_budget(SPACE, view, Budget(1e9, memory_mb=min_mem)) is None


@pytest.mark.parametrize("budget", [Budget(12.0), Budget(20.0), Budget(30.0, memory_mb=250.0), Budget(120.0, "ttft"), Budget(250.0, "e2e")])
def test_exhaustive_matches_brute_force_and_is_feasible(budget: Budget) -> None:
    view = LatencyView(SyntheticLatency(out_of_range=frozenset({"L8-a1-f1", "L7-a1-f1"})))
    src = FunctionAccuracy(synthetic_accuracy)
    out = exhaustive_search(UniformSpace(SPACE), view, src, budget)
    ref = brute_force(UniformSpace(SPACE), view, budget)
    assert out.best is not None and out.best.shape == ref.shape
    for r in out.evaluated:
        assert budget.feasible(view.estimate(SubnetSpec.parse(r.shape)), view.gen_len)
    assert src.evaluations == len(out.evaluated) == out.trials


def test_answer_found_with_front_and_neighbours() -> None:
    view = LatencyView(SyntheticLatency())
    src = FunctionAccuracy(synthetic_accuracy)
    budget = Budget(12.0)
    ans = answer_query(UniformSpace(SPACE), view, src, budget, k_neighbours=2)
    assert isinstance(ans, Found)
    assert ans.best.shape == brute_force(UniformSpace(SPACE), view, budget).shape
    assert ans.best.latency_ms <= 12.0 and ans.method == "exhaustive" and ans.evaluations == src.evaluations
    assert ans.front == sorted(ans.front, key=lambda r: r.latency_ms)
    assert ans.best.shape in {r.shape for r in ans.front}
    assert not ans.front_complete  # shapes slower than the budget were never evaluated
    lat = [r.latency_ms for r in ans.neighbours]
    assert len(ans.neighbours) == 2 and all(x <= ans.best.latency_ms for x in lat)  # only feasible shapes are known
    front_all = front_of(SPACE, view, src, "tpot")
    again = answer_query(UniformSpace(SPACE), view, src, budget)
    assert isinstance(again, Found) and again.front_complete and again.evaluations == 0 and again.front == front_all
    assert any(r.latency_ms > 12.0 for r in again.neighbours)


def test_infeasible_answer_evaluates_nothing() -> None:
    src = FunctionAccuracy(synthetic_accuracy)
    ans = answer_query(UniformSpace(SPACE), LatencyView(SyntheticLatency()), src, Budget(1.0))
    assert isinstance(ans, Infeasible) and src.evaluations == 0


def test_answers_round_trip_through_json() -> None:
    view = LatencyView(SyntheticLatency())
    src = FunctionAccuracy(synthetic_accuracy)
    for budget in (Budget(20.0, memory_mb=300.0), Budget(1.0, "ttft")):
        ans = answer_query(UniformSpace(SPACE), view, src, budget)
        d = json.loads(json.dumps(ans.to_dict()))
        assert answer_from_dict(d) == ans
    with pytest.raises(ConfigError, match="kind"):
        answer_from_dict({"budget": {"latency_ms": 1.0}, "kind": "maybe"})
