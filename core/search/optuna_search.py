"""Constraint-aware Optuna search over a ``SearchSpace`` (Optuna 5: ``trial.set_constraint``).

Each trial draws a shape, predicts its latency (cheap) and records the constraints (latency over budget,
memory over cap, outside the profiled range; feasible when all ≤ 0). With TPE an infeasible trial is pruned
before its accuracy is evaluated (TPE reads the constraints of pruned trials, so it still learns from them);
NSGA-II only learns from completed trials, so there infeasible shapes are evaluated too. The answer is taken
from the study's trials (from every worker sharing the study), never from an infeasible one.

The search runs in rounds: ``explore_trials`` sampler trials, then a local polish (still Optuna trials, queued
with ``enqueue_trial``) that evaluates the untried feasible neighbours of the ``polish_starts`` best trials
(see ``local_moves``) until none is left or the trial budget is spent. Polishing several starts, not only the
best, is what makes isolated optima on the budget boundary reachable (measured in tests/core/test_search_optuna.py).

Storage: ``None`` (in memory) or an SQLAlchemy URL (``sqlite:///study.db``,
``postgresql+psycopg://user@host/db``); Optuna keeps its own tables there, so several workers can share a study.
``OptunaConfig`` lives in the torch-free ``core.search.config`` (imported here, so both paths work).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError
from core.latency import LatencyEstimate
from core.search.accuracy import AccuracySource
from core.search.config import OptunaConfig
from core.search.query import Budget, SearchOutcome, ShapeResult, rank
from core.search.shapes import LatencyView, SearchSpace, Shape

if TYPE_CHECKING:
    import optuna

SHAPE_ATTR = "amoeba_shape"
LATENCY_ATTR = "amoeba_latency"
FULL_CUBE_DIMS = 4


def make_sampler(config: OptunaConfig) -> optuna.samplers.BaseSampler:
    """The constraint-aware sampler (constraints come from ``trial.set_constraint``)."""
    import optuna

    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=config.seed, population_size=max(2, config.n_startup_trials))
    return optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=config.n_startup_trials, multivariate=True)


def make_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """``None`` (in memory) or an ``RDBStorage`` for an SQLAlchemy URL (SQLite waits up to 60 s on locks).

    Concurrent first use of an empty database races on Optuna's schema creation; that is retried a few times.
    """
    import optuna
    import sqlalchemy.exc

    if url is None:
        return None
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def open_study(config: OptunaConfig, attrs: Mapping[str, Any]) -> optuna.Study:
    """Create or join the study; a joined study must carry the same ``attrs`` (space, budget, data identities)."""
    import optuna

    study = optuna.create_study(
        study_name=config.study_name, storage=make_storage(config.storage), sampler=make_sampler(config), direction="maximize", load_if_exists=True
    )
    have = study.user_attrs
    for k, v in attrs.items():
        v = json.loads(json.dumps(v))
        if k in have and have[k] != v:
            raise ConfigError(f"study {config.study_name!r} was created with another {k}: {have[k]!r} (this worker: {v!r})")
        if k not in have:
            study.set_user_attr(k, v)
    return study


def delete_study(storage: str, study_name: str) -> None:
    """Delete a study and its trials from ``storage`` (``ConfigError`` when it does not exist)."""
    import optuna

    try:
        optuna.delete_study(study_name=study_name, storage=storage)
    except KeyError:
        raise ConfigError(f"no study named {study_name!r} in {storage}") from None


def draw(trial: optuna.trial.BaseTrial, space: SearchSpace, view: LatencyView, budget: Budget, parametrization: str) -> tuple[Shape, dict[str, float]]:
    """The trial's shape and its constraint values (feasible when all are ≤ 0).

    ``natural``: depth and widths are parameters. ``budget``: the widths are parameters and ``depth_slack``
    picks the (slack+1)-th deepest depth at which those widths are feasible (latency is cheap to predict), so
    most trials are feasible and slack 0 is "as deep as the budget allows"; a slack beyond the feasible depths
    is a violation of the ``depth_slack`` constraint. Both reach every feasible shape.
    """
    g = view.gen_len
    if parametrization == "natural":
        shape = space.suggest(trial)
        return shape, budget.violations(view.estimate(shape), g)
    widths = space.suggest_widths(trial)
    b = space.base
    slack = trial.suggest_int("depth_slack", 0, b.max_layers - b.min_layers)
    depths = [n for n in range(b.max_layers, b.min_layers - 1, -1) if budget.feasible(view.estimate(space.at_depth(widths, n)), g)]
    shape = space.at_depth(widths, depths[slack] if slack < len(depths) else b.min_layers)
    return shape, {**budget.violations(view.estimate(shape), g), "depth_slack": float(max(0, slack - len(depths) + 1))}


def run_trials(
    study: optuna.Study, space: SearchSpace, view: LatencyView, source: AccuracySource, budget: Budget, n_trials: int,
    parametrization: str = "budget", on_trial: Callable[[int, int], None] | None = None, evaluate_infeasible: bool = False,
) -> None:
    """Run ``n_trials`` trials of the constrained objective on ``study``."""
    import optuna

    done = [0]

    def objective(trial: optuna.Trial) -> float:
        shape, viol = draw(trial, space, view, budget, parametrization)
        est = view.estimate(shape)
        trial.set_user_attr(SHAPE_ATTR, shape.key)
        trial.set_user_attr(LATENCY_ATTR, {"ttft_ms": est.ttft_ms, "tpot_ms": est.tpot_ms, "peak_mem_mb": est.peak_mem_mb, "in_range": est.in_range,
                                           "num_layers": shape.num_layers})
        for k, v in viol.items():
            trial.set_constraint(k, v)
        if not evaluate_infeasible and any(v > 0 for v in viol.values()):
            raise optuna.TrialPruned()
        return source.accuracy(shape)

    def callback(_study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        done[0] += 1
        if on_trial is not None:
            on_trial(done[0], n_trials)

    study.optimize(objective, n_trials=n_trials, callbacks=[callback], catch=())


def _result(t: optuna.trial.FrozenTrial, metric: str, gen_len: int) -> ShapeResult | None:
    key, lat = t.user_attrs.get(SHAPE_ATTR), t.user_attrs.get(LATENCY_ATTR)
    if key is None or lat is None:
        return None
    est = LatencyEstimate(float(lat["ttft_ms"]), float(lat["tpot_ms"]), lat["peak_mem_mb"], bool(lat["in_range"]))
    return ShapeResult(key, int(lat["num_layers"]), t.value if t.value is not None else None, est.value(metric, gen_len), est.ttft_ms, est.tpot_ms,  # type: ignore[arg-type]
                       est.peak_mem_mb, est.in_range, est.e2e_ms(gen_len))


def _top_trials(study: optuna.Study, budget: Budget, gen_len: int, k: int) -> list[tuple[optuna.trial.FrozenTrial, ShapeResult]]:
    """The ``k`` best feasible completed trials (distinct shapes), best first under ``rank``."""
    from optuna.trial import TrialState

    best: dict[str, tuple[optuna.trial.FrozenTrial, ShapeResult]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        r = _result(t, budget.metric, gen_len)
        if r is not None and t.constraints and all(v <= 0 for v in t.constraints.values()):
            best.setdefault(r.shape, (t, r))
    return sorted(best.values(), key=lambda tr: rank(tr[1]))[:k]


def study_outcome(study: optuna.Study, budget: Budget, gen_len: int) -> SearchOutcome:
    """Best feasible result over every finished trial of ``study`` (all workers), evaluated results, trial count."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    seen = {r.shape: r for t in trials if t.state == TrialState.COMPLETE and (r := _result(t, budget.metric, gen_len)) is not None}
    top = _top_trials(study, budget, gen_len, 1)
    return SearchOutcome(top[0][1] if top else None, sorted(seen.values(), key=lambda r: r.shape), len(trials))


def local_moves(params: Mapping[str, Any], dists: Mapping[str, Any]) -> list[dict[str, int]]:
    """Neighbours of ``params`` over the integer parameters, within bounds.

    Up to ``FULL_CUBE_DIMS`` parameters: every change in {−1, 0, +1} per parameter (the whole cube). Beyond:
    ±1 on one parameter, or +1 on one and −1 on another (trades along the budget boundary).
    """
    import itertools

    from optuna.distributions import IntDistribution

    names = [n for n, d in dists.items() if isinstance(d, IntDistribution)]
    if len(names) <= FULL_CUBE_DIMS:
        steps = [{n: s for n, s in zip(names, c, strict=True) if s} for c in itertools.product((-1, 0, 1), repeat=len(names)) if any(c)]
    else:
        steps = [{n: s} for n in names for s in (1, -1)] + [{a: 1, b: -1} for a in names for b in names if a != b]
    out = []
    for step in steps:
        p = dict(params)
        for n, s in step.items():
            p[n] = p[n] + s
        if all(dists[n].low <= p[n] <= dists[n].high for n in step):
            out.append(p)
    return out


def polish(study: optuna.Study, space: SearchSpace, view: LatencyView, source: AccuracySource, budget: Budget, max_trials: int,
           parametrization: str = "budget", starts: int = 3, on_trial: Callable[[int, int], None] | None = None) -> int:
    """Evaluate untried feasible neighbours of the ``starts`` best trials until none is left; returns trials used."""
    from optuna.trial import FixedTrial

    used = 0
    while used < max_trials:
        tried = {tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False)}
        batch: dict[tuple[Any, ...], dict[str, int]] = {}
        for t, _ in _top_trials(study, budget, view.gen_len, starts):
            for p in local_moves(t.params, t.distributions):
                key = tuple(sorted(p.items()))
                if key not in tried and key not in batch and all(v <= 0 for v in draw(FixedTrial(p), space, view, budget, parametrization)[1].values()):
                    batch[key] = p
        if not batch:
            break
        n = min(len(batch), max_trials - used)
        for p in list(batch.values())[:n]:
            study.enqueue_trial(p, skip_if_exists=True)
        run_trials(study, space, view, source, budget, n, parametrization, on_trial)
        used += n
    return used


def optuna_search(
    space: SearchSpace, view: LatencyView, source: AccuracySource, budget: Budget, config: OptunaConfig,
    attrs: Mapping[str, Any] | None = None, on_trial: Callable[[int, int], None] | None = None,
) -> SearchOutcome:
    """Run ``config.n_trials`` trials on the (possibly shared) study and return its best feasible shape.

    Rounds of ``explore_trials`` sampler trials, each followed by a polish from the ``polish_starts`` best trials.
    """
    study_attrs = {"space": space.describe(), "budget": {"latency_ms": budget.latency_ms, "metric": budget.metric, "memory_mb": budget.memory_mb},
                   "gen_len": view.gen_len, "parametrization": config.parametrization, **(attrs or {})}
    study = open_study(config, study_attrs)
    used = 0
    while used < config.n_trials:
        n = min(config.explore_trials, config.n_trials - used)
        run_trials(study, space, view, source, budget, n, config.parametrization, on_trial, evaluate_infeasible=config.sampler == "nsga2")
        used += n
        if config.polish_starts:
            used += polish(study, space, view, source, budget, config.n_trials - used, config.parametrization, config.polish_starts, on_trial)
    return study_outcome(study, budget, view.gen_len)
