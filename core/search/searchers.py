"""Searcher plugins: how the best feasible shape of a problem is found.

A ``Searcher`` gets a ``Problem`` (space, latency view, accuracy source, budget, objective, and — for enumerable
spaces — the feasible shapes of the one feasibility pass) and returns a ``SearchOutcome``. It never returns an
infeasible shape. Registered by name in ``SEARCHERS`` (in the torch-free ``core.search.registries``) and loaded lazily
(``get_searcher``); the contract suite (tests/core/test_search_searchers.py) checks every registered searcher against
``exhaustive`` on enumerable spaces.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from core.errors import ConfigError
from core.latency import LatencyEstimate
from core.search.accuracy import AccuracySource
from core.search.objectives import Objective
from core.search.optuna_search import OptunaConfig
from core.search.query import Budget, SearchOutcome, ShapeResult
from core.search.registries import SEARCHERS
from core.search.shapes import LatencyView, SearchSpace, Shape


@dataclass
class Problem:
    """One search problem. ``feasible`` is the feasibility pass over an enumerated space (``None`` otherwise)."""

    space: SearchSpace
    view: LatencyView
    source: AccuracySource
    budget: Budget
    objective: Objective
    feasible: Sequence[tuple[Shape, LatencyEstimate]] | None = None
    optuna: OptunaConfig | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    on_step: Callable[[int, int], None] | None = None

    def result(self, shape: Shape, est: LatencyEstimate, accuracy: float | None) -> ShapeResult:
        raw_of = getattr(self.source, "raw", None)  # sources that know the metric's native value (SnapshotSource)
        raw = raw_of(shape) if raw_of is not None else None
        return ShapeResult.of(shape, est, self.budget.metric, self.view.gen_len, accuracy, raw)

    def feasible_shapes(self) -> Sequence[tuple[Shape, LatencyEstimate]]:
        if self.feasible is not None:
            return self.feasible
        g = self.view.gen_len
        return [(s, e) for s in self.space if self.budget.feasible(e := self.view.estimate(s), g)]


class Searcher(ABC):
    """Finds the objective's best feasible shape of a ``Problem``."""

    name: ClassVar[str]
    enumerates: ClassVar[bool] = False
    """True when the searcher visits every feasible shape (exact; needs an enumerable space)."""

    @abstractmethod
    def search(self, problem: Problem) -> SearchOutcome:
        """Best feasible result (``None`` only when nothing feasible was found), every evaluated result, trials."""


class ExhaustiveSearcher(Searcher):
    """Evaluate every feasible shape and take the objective's best: the exact reference."""

    name = "exhaustive"
    enumerates = True

    def search(self, problem: Problem) -> SearchOutcome:
        feasible = problem.feasible_shapes()
        evaluated = []
        for i, (s, e) in enumerate(feasible):
            evaluated.append(problem.result(s, e, problem.source.accuracy(s)))
            if problem.on_step is not None:
                problem.on_step(i + 1, len(feasible))
        return SearchOutcome(problem.objective.best(evaluated), evaluated, len(feasible))


class IndexSearcher(Searcher):
    """Answer by lookup in an ``AnswerIndex`` over the in-range shapes (every accuracy must be known)."""

    name = "index"
    enumerates = True

    def search(self, problem: Problem) -> SearchOutcome:
        from core.search.index import AnswerIndex

        g, src = problem.view.gen_len, problem.source
        rows = []
        for s in problem.space:
            e = problem.view.estimate(s)
            if e.in_range:
                acc = src.known(s)
                if acc is None:
                    raise ConfigError(f"the index needs every accuracy; {s.key} is not known")
                rows.append((s, e, acc, getattr(src, "raw", lambda _s: None)(s)))
        idx = AnswerIndex(problem.space, problem.view, problem.budget.metric, problem.objective, rows)
        best = idx.best(problem.budget)
        feas = [x.result for x in idx.entries if problem.budget.feasible(x.estimate, g)]
        return SearchOutcome(best, feas, len(feas))


class TpeSearcher(Searcher):
    """Optuna TPE with constraints (``core.search.optuna_search``); falls back to the fastest feasible shape."""

    name = "optuna"
    sampler: ClassVar[str] = "tpe"

    def search(self, problem: Problem) -> SearchOutcome:
        from core.search.optuna_search import optuna_search

        cfg = replace(problem.optuna or OptunaConfig(), sampler=self.sampler)  # type: ignore[arg-type]
        out = optuna_search(problem.space, problem.view, problem.source, problem.budget, cfg, attrs=problem.attrs, on_trial=problem.on_step)
        best = out.best
        if best is not None:  # the objective's tie-break over what the study evaluated
            feasible = [r for r in out.evaluated if r.accuracy is not None and self._feasible(problem, r)]
            best = problem.objective.best(feasible) or best
            return SearchOutcome(best, out.evaluated, out.trials)
        return self._fallback(problem, out)

    @staticmethod
    def _feasible(problem: Problem, r: ShapeResult) -> bool:
        est = LatencyEstimate(r.ttft_ms, r.tpot_ms, r.peak_mem_mb, r.in_range)
        return problem.budget.feasible(est, problem.view.gen_len)

    @staticmethod
    def _fallback(problem: Problem, out: SearchOutcome) -> SearchOutcome:
        """No feasible trial: evaluate the fastest feasible uniform shape (it exists once the range check passed)."""
        b, g = problem.budget, problem.view.gen_len
        feas = [(s, e) for s in problem.space.base if b.feasible(e := problem.view.estimate(s), g)]
        if not feas:
            return SearchOutcome(None, out.evaluated, out.trials)
        s, e = min(feas, key=lambda se: (se[1].value(b.metric, g), se[0].key))
        best = problem.result(s, e, problem.source.accuracy(s))
        return SearchOutcome(best, [*out.evaluated, best], out.trials)


class NsgaSearcher(TpeSearcher):
    """Optuna NSGA-II on the objective's Pareto axes (maximise the score, minimise each axis), constraints from the
    budget; then a local polish: hill-climb from the best feasible trial over its neighbouring parameters
    (``optuna_search.local_moves``) while that improves the objective. Returns the objective's best feasible shape."""

    name = "nsga2"
    sampler = "nsga2"

    def search(self, problem: Problem) -> SearchOutcome:
        import optuna
        from optuna.trial import FixedTrial

        from core.search.objectives import axis_value
        from core.search.optuna_search import draw, local_moves, make_storage

        cfg = problem.optuna or OptunaConfig()
        obj, view, budget, g = problem.objective, problem.view, problem.budget, problem.view.gen_len
        sampler = optuna.samplers.NSGAIISampler(seed=cfg.seed, population_size=max(4, cfg.n_startup_trials))
        directions: list[str] = ["maximize"] + ["minimize"] * len(obj.axes)
        study = optuna.create_study(directions=directions, sampler=sampler, storage=make_storage(cfg.storage),  # type: ignore[arg-type]
                                    study_name=cfg.study_name, load_if_exists=cfg.study_name is not None)
        seen: dict[str, tuple[ShapeResult, bool]] = {}
        params: dict[str, int] = {}

        def evaluate(shape: Shape, viol: dict[str, float]) -> ShapeResult:
            if shape.key not in seen:
                seen[shape.key] = (problem.result(shape, view.estimate(shape), problem.source.accuracy(shape)), all(v <= 0 for v in viol.values()))
            return seen[shape.key][0]

        def objective(trial: optuna.Trial) -> tuple[float, ...]:
            shape, viol = draw(trial, problem.space, view, budget, cfg.parametrization)
            for k, v in viol.items():
                trial.set_constraint(k, v)
            r = evaluate(shape, viol)
            params.setdefault(shape.key, trial.number)
            return (float(r.accuracy or 0.0), *(axis_value(r, a) for a in obj.axes))

        study.optimize(objective, n_trials=cfg.n_trials, catch=())
        best = obj.best(r for r, ok in seen.values() if ok)
        if best is None:
            return self._fallback(problem, SearchOutcome(None, [r for r, _ in seen.values()], cfg.n_trials))
        trial = study.trials[params[best.shape]]
        current, dists, extra = dict(trial.params), trial.distributions, 0
        improved = True
        while improved and extra < cfg.n_trials:  # polish, at most n_trials more evaluations
            improved = False
            for p in local_moves(current, dists):
                shape, viol = draw(FixedTrial(p), problem.space, view, budget, cfg.parametrization)
                if any(v > 0 for v in viol.values()):
                    continue
                extra += shape.key not in seen
                r = evaluate(shape, viol)
                if obj.rank(r) < obj.rank(best):
                    best, current, improved = r, p, True
                    break
        assert budget.feasible(view.estimate(_shape_of(problem, best.shape)), g)
        return SearchOutcome(best, [r for r, _ in seen.values()], cfg.n_trials + extra)


def _shape_of(problem: Problem, key: str) -> Shape:
    from core.search.shapes import GroupedShape
    from core.spec import SubnetSpec

    try:
        return SubnetSpec.parse(key)
    except ConfigError:
        return GroupedShape.parse(key)


def get_searcher(name: str) -> Searcher:
    """The searcher registered as ``name`` (``ConfigError`` listing the known ones)."""
    s: Searcher = SEARCHERS.load(name)()
    return s
