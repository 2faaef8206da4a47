"""Optuna search against the exhaustive reference, feasibility, shared studies (SQLite, PostgreSQL).

Stated trial budget: 40 trials (seeded) find the exhaustive optimum on the 96-shape uniform space and on a
96-shape grouped space. Measured while writing this (5 budgets x 5 seeds each): 25/25 on both, with about 31
accuracy evaluations per query against 21-93 for exhaustive search.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import uuid
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.search.accuracy import FunctionAccuracy
from core.search.answer import answer_query
from core.search.exhaustive import exhaustive_search
from core.search.optuna_search import OptunaConfig, delete_study, draw, local_moves, optuna_search
from core.search.query import Budget, Found
from core.search.shapes import GroupedShape, GroupedSpace, LatencyView, UniformSpace
from core.spec import ShapeSpace, SubnetSpec
from tests.core.test_search_query import SPACE, SyntheticLatency, synthetic_accuracy

TRIALS = 40
BUDGETS = (8.0, 10.0, 12.0, 14.0, 16.0)
GROUPED = GroupedSpace(ShapeSpace(8, 3, (1.0, 0.75)), 2)  # 6 depths x 2^4 width combinations = 96 shapes


def _parse(key: str) -> SubnetSpec | GroupedShape:
    return GroupedShape.parse(key) if "," in key else SubnetSpec.parse(key)


@pytest.mark.parametrize("space", [UniformSpace(SPACE), GROUPED], ids=["uniform", "grouped"])
@pytest.mark.parametrize("budget", BUDGETS)
def test_optuna_finds_the_exhaustive_optimum(space: GroupedSpace, budget: float) -> None:
    view = LatencyView(SyntheticLatency())
    ref = exhaustive_search(space, view, FunctionAccuracy(synthetic_accuracy), Budget(budget))
    src = FunctionAccuracy(synthetic_accuracy)
    out = optuna_search(space, view, src, Budget(budget), OptunaConfig(n_trials=TRIALS, seed=0))
    assert out.best is not None and ref.best is not None
    assert out.best.shape == ref.best.shape
    assert out.best.accuracy == ref.best.accuracy
    assert out.trials == TRIALS and src.evaluations <= TRIALS


def test_never_returns_infeasible_or_out_of_range_shapes() -> None:
    # the unconstrained optimum (L8-a1-f1) and its neighbours are out of range; memory caps the rest
    oor = frozenset({"L8-a1-f1", "L8-a0.875-f1", "L8-a1-f0.875", "L7-a1-f1"})
    view = LatencyView(SyntheticLatency(out_of_range=oor))
    budget = Budget(1e6, memory_mb=260.0)
    for seed in range(3):
        out = optuna_search(UniformSpace(SPACE), view, FunctionAccuracy(synthetic_accuracy), budget, OptunaConfig(n_trials=30, seed=seed))
        assert out.best is not None
        assert budget.feasible(view.estimate(_parse(out.best.shape)), view.gen_len)
        assert out.best.shape not in oor


def test_nsga2_and_natural_parametrization_stay_feasible() -> None:
    view, budget = LatencyView(SyntheticLatency()), Budget(11.0)
    for cfg in (OptunaConfig(n_trials=30, seed=0, sampler="nsga2", parametrization="natural"), OptunaConfig(n_trials=30, seed=0, parametrization="natural")):
        src = FunctionAccuracy(synthetic_accuracy)
        out = optuna_search(UniformSpace(SPACE), view, src, budget, cfg)
        assert out.best is not None and budget.feasible(view.estimate(SubnetSpec.parse(out.best.shape)), view.gen_len)
        if cfg.sampler == "nsga2":  # NSGA-II learns only from completed trials, so infeasible shapes get evaluated too
            assert any(not budget.feasible(view.estimate(SubnetSpec.parse(r.shape)), view.gen_len) for r in out.evaluated)


def test_budget_parametrization_reaches_exactly_the_feasible_shapes() -> None:
    from optuna.trial import FixedTrial

    view, budget = LatencyView(SyntheticLatency()), Budget(11.0)
    for space in (UniformSpace(SPACE), GROUPED):
        feasible = {s.key for s in space if budget.feasible(view.estimate(s), view.gen_len)}
        names = [n for n in ("attn_idx", "ffn_idx", "attn_idx_0", "attn_idx_1", "ffn_idx_0", "ffn_idx_1") if (n[-1].isdigit()) == (space.groups > 1)]
        reached = set()
        for combo in itertools.product(range(len(space.base.widths)), repeat=len(names)):
            for slack in range(space.base.max_layers - space.base.min_layers + 1):
                shape, viol = draw(FixedTrial({**dict(zip(names, combo, strict=True)), "depth_slack": slack}), space, view, budget, "budget")
                if all(v <= 0 for v in viol.values()):
                    reached.add(shape.key)
                else:
                    assert shape.key not in feasible or viol["depth_slack"] > 0
        assert reached == feasible


def test_local_moves() -> None:
    from optuna.distributions import IntDistribution

    d = {"x": IntDistribution(0, 3), "y": IntDistribution(0, 3)}
    moves = local_moves({"x": 0, "y": 3}, d)
    assert sorted((m["x"], m["y"]) for m in moves) == [(0, 2), (1, 2), (1, 3)]
    d5 = {f"p{i}": IntDistribution(0, 3) for i in range(5)}
    moves5 = local_moves({f"p{i}": 1 for i in range(5)}, d5)
    assert len(moves5) == 10 + 20  # +-1 on one, or a +1/-1 trade between two (above FULL_CUBE_DIMS)


def test_answer_query_with_optuna() -> None:
    view = LatencyView(SyntheticLatency())
    src = FunctionAccuracy(synthetic_accuracy)
    ans = answer_query(UniformSpace(SPACE), view, src, Budget(12.0), method="optuna", optuna=OptunaConfig(n_trials=TRIALS, seed=1))
    ref = exhaustive_search(UniformSpace(SPACE), view, FunctionAccuracy(synthetic_accuracy), Budget(12.0))
    assert isinstance(ans, Found) and ref.best is not None
    assert ans.best.shape == ref.best.shape and ans.method == "optuna" and ans.trials == TRIALS
    assert ans.evaluations == src.evaluations < len(ref.evaluated) + 10


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="n_trials"):
        OptunaConfig(n_trials=0)
    with pytest.raises(ConfigError, match="study name"):
        OptunaConfig(storage="sqlite:///x.db")
    with pytest.raises(ConfigError, match="sampler"):
        OptunaConfig(sampler="cmaes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="parametrization"):
        OptunaConfig(parametrization="other")  # type: ignore[arg-type]


def _worker(storage: str, study: str, seed: int, n: int) -> None:
    cfg = OptunaConfig(n_trials=n, seed=seed, storage=storage, study_name=study)
    optuna_search(UniformSpace(SPACE), LatencyView(SyntheticLatency()), FunctionAccuracy(synthetic_accuracy), Budget(12.0), cfg)


def _shared_study(storage: str, study: str) -> None:
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(storage, study, seed, 12)) for seed in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    # a third worker joining the same study sees all trials; its answer is the exhaustive optimum
    view = LatencyView(SyntheticLatency())
    src = FunctionAccuracy(synthetic_accuracy)
    out = optuna_search(UniformSpace(SPACE), view, src, Budget(12.0), OptunaConfig(n_trials=4, seed=2, storage=storage, study_name=study))
    assert out.trials == 28
    assert len(out.evaluated) > src.evaluations  # it sees what the other workers evaluated
    assert out.best is not None and out.best == max(out.evaluated, key=lambda r: (r.accuracy, -r.latency_ms))
    assert Budget(12.0).feasible(view.estimate(SubnetSpec.parse(out.best.shape)), view.gen_len)
    with pytest.raises(ConfigError, match="created with another budget"):
        cfg = OptunaConfig(n_trials=1, storage=storage, study_name=study)
        optuna_search(UniformSpace(SPACE), view, FunctionAccuracy(synthetic_accuracy), Budget(13.0), cfg)


def test_workers_share_a_sqlite_study(tmp_path: Path) -> None:
    _shared_study(f"sqlite:///{tmp_path / 'study.db'}", "shared")


@pytest.mark.postgres
def test_workers_share_a_postgres_study() -> None:
    storage = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    name = f"amoeba-test-{uuid.uuid4().hex}"
    try:
        _shared_study(storage, name)
    finally:
        delete_study(storage, name)
    with pytest.raises(ConfigError, match="no study named"):
        delete_study(storage, name)
