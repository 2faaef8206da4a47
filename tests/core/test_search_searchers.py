"""The searcher and objective contract suite: every registered searcher against exhaustive on enumerable spaces.

Contract: a searcher never returns an infeasible shape; the exact ones (``enumerates``) return exactly the
exhaustive answer; the sampling ones (Optuna TPE, NSGA-II) reach the exhaustive optimum on these small spaces
with a trial budget below the space size. Checked for every registered objective, for latency-only budgets,
memory caps and multi-constraint budgets, and through the pipeline's answer index (cache hit and miss).
"""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.search.accuracy import FunctionAccuracy
from core.search.answer import SourceProvider
from core.search.index import IndexCache
from core.search.objectives import OBJECTIVES, get_objective
from core.search.optuna_search import OptunaConfig
from core.search.pipeline import AccuracyPending, ModelFingerprint, ModelMismatch, Query, SearchContext, run_query
from core.search.query import Budget, Found
from core.search.searchers import SEARCHERS, Problem, get_searcher
from core.search.shapes import LatencyView, UniformSpace
from core.spec import ShapeSpace
from tests.core.test_search_query import SyntheticLatency, synthetic_accuracy

SPACE = UniformSpace(ShapeSpace(8, 3))
BUDGETS = [
    Budget(9.0),
    Budget(14.0),
    Budget(80.0, "ttft"),
    Budget(200.0, "e2e"),
    Budget(14.0, memory_mb=190.0),
    Budget(14.0, "tpot", None, (("ttft_ms", 90.0),)),
    Budget(12.0, "tpot", 200.0, (("e2e_ms", 180.0), ("ttft_ms", 95.0))),
]


def _problem(budget: Budget, objective: str, view: LatencyView) -> Problem:
    g = view.gen_len
    feasible = [(s, e) for s in SPACE if budget.feasible(e := view.estimate(s), g)]
    cfg = OptunaConfig(n_trials=60, seed=0)
    return Problem(SPACE, view, FunctionAccuracy(synthetic_accuracy), budget, get_objective(objective), feasible, cfg)


def _prefill(problem: Problem) -> None:
    for s in SPACE:  # the index needs every accuracy known
        problem.source.accuracy(s)


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("name", sorted(SEARCHERS))
@pytest.mark.parametrize("budget", BUDGETS, ids=lambda b: f"{b.metric}{b.latency_ms:g}-m{b.memory_mb}-{len(b.limits)}")
def test_every_searcher_matches_exhaustive_and_is_feasible(name: str, objective: str, budget: Budget) -> None:
    if objective == "memory_latency" and budget.memory_mb is None:
        with pytest.raises(ConfigError, match="memory budget"):
            get_objective(objective).validate(budget)
        return
    view = LatencyView(SyntheticLatency())
    ref = get_searcher("exhaustive").search(_problem(budget, objective, view))
    assert ref.best is not None
    problem = _problem(budget, objective, view)
    if name == "index":
        _prefill(problem)
    searcher = get_searcher(name)
    out = searcher.search(problem)
    assert out.best is not None
    est = view.estimate(next(s for s in SPACE if s.key == out.best.shape))
    assert budget.feasible(est, view.gen_len), f"{name} returned the infeasible {out.best.shape}"
    for r in out.evaluated:  # nothing it reports as its answer pool is infeasible either
        if r.shape == out.best.shape:
            assert r.accuracy == out.best.accuracy
    assert out.best.accuracy == pytest.approx(ref.best.accuracy), (name, out.best.shape, ref.best.shape)
    if searcher.enumerates:
        assert out.best.shape == ref.best.shape


def test_memory_latency_objective_breaks_ties_by_memory_and_spans_three_axes() -> None:
    from core.search.query import ShapeResult

    obj = get_objective("memory_latency")
    a = ShapeResult("L4-a1-f1", 4, -1.0, 5.0, 9.0, 5.0, 300.0, True, 40.0)
    b = ShapeResult("L4-a0.5-f1", 4, -1.0, 6.0, 9.0, 6.0, 200.0, True, 50.0)
    c = ShapeResult("L3-a1-f1", 3, -2.0, 4.0, 8.0, 4.0, 250.0, True, 30.0)
    assert obj.best([a, b, c]) == b  # equal score: less memory wins
    assert get_objective("accuracy").best([a, b, c]) == a  # equal score: less latency wins
    assert {p.shape for p in obj.front([a, b, c])} == {"L4-a1-f1", "L4-a0.5-f1", "L3-a1-f1"}
    assert {p.shape for p in get_objective("accuracy").front([a, b, c])} == {"L4-a1-f1", "L3-a1-f1"}


def test_unknown_plugins_are_named() -> None:
    with pytest.raises(ConfigError, match="unknown searcher 'random'; known: ") as e:
        get_searcher("random")
    assert all(n in str(e.value) for n in ("exhaustive", "index", "nsga2", "optuna"))
    with pytest.raises(ConfigError, match="unknown objective 'speed'; known: accuracy, memory_latency"):
        get_objective("speed")


def _ctx(cache: IndexCache | None = None, evaluate: bool = True, src: FunctionAccuracy | None = None) -> SearchContext:
    src = src or FunctionAccuracy(synthetic_accuracy)
    return SearchContext(SPACE, lambda: LatencyView(SyntheticLatency()), SourceProvider(src), evaluate=evaluate, index_cache=cache,
                         index_key=("fit", 1) if cache is not None else None)


@pytest.mark.parametrize("budget", BUDGETS, ids=lambda b: f"{b.metric}{b.latency_ms:g}-m{b.memory_mb}-{len(b.limits)}")
def test_pipeline_index_answers_exactly_like_exhaustive(budget: Budget) -> None:
    src = FunctionAccuracy(synthetic_accuracy)
    exact = run_query(_ctx(src=src), Query(budget, method="exhaustive"))
    for s in SPACE:
        src.accuracy(s)
    cache = IndexCache()
    first = run_query(_ctx(cache, evaluate=False, src=src), Query(budget))  # builds the index
    again = run_query(_ctx(cache, evaluate=False, src=src), Query(budget))  # cache hit
    assert isinstance(exact, Found) and isinstance(first, Found) and isinstance(again, Found)
    assert first.method == again.method == "index" and cache.builds == 1
    assert first.best == again.best and first.best.shape == exact.best.shape and first.best.accuracy == exact.best.accuracy
    assert [n.shape for n in first.neighbours] == [n.shape for n in again.neighbours]
    assert first.best.e2e_ms == pytest.approx(first.best.ttft_ms + 15 * first.best.tpot_ms)


@pytest.mark.parametrize("budget", [Budget(3.0), Budget(20.0, "ttft"), Budget(14.0, memory_mb=100.0), Budget(14.0, "tpot", None, (("ttft_ms", 5.0),))],
                         ids=["tpot", "ttft", "memory", "limit"])
def test_pipeline_index_answers_infeasible_exactly_like_the_range_check(budget: Budget) -> None:
    from core.search.query import check_budget

    src = FunctionAccuracy(synthetic_accuracy)
    for s in SPACE:
        src.accuracy(s)
    cache = IndexCache()
    run_query(_ctx(cache, evaluate=False, src=src), Query(Budget(1000.0, budget.metric)))  # builds the index of this metric
    ans = run_query(_ctx(cache, evaluate=False, src=src), Query(budget))
    ref = check_budget(SPACE.base, LatencyView(SyntheticLatency()), budget)
    assert cache.builds == 1 and ref is not None and ans == ref


def test_pipeline_model_check_and_pending_accuracies() -> None:
    dims = dict(model_type="llama", num_layers=8, hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=16, intermediate_size=128, vocab_size=97)
    ctx = _ctx()
    ctx.profile_model = ModelFingerprint(**{**dims, "intermediate_size": 256})  # type: ignore[arg-type]
    ctx.checkpoint_model = ModelFingerprint(**dims)  # type: ignore[arg-type]
    with pytest.raises(ModelMismatch, match="ffn256.*ffn128"):
        run_query(ctx, Query(Budget(14.0)))
    with pytest.raises(AccuracyPending, match="not computed yet"):
        run_query(_ctx(evaluate=False), Query(Budget(14.0)))
