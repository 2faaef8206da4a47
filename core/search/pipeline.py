"""The one query pipeline that ``amoeba search`` and ``POST /v1/search`` both call.

``run_query(ctx, query)`` does, once each: the model check (the latency profile must be of the checkpoint's
model), the budget check (against the profiled range), the feasibility pass (enumerable spaces), and one bulk
accuracy snapshot; then a searcher plugin (or the precomputed ``AnswerIndex``) picks the objective's best shape.
Results carry the raw accuracy (the metric's native value, e.g. perplexity) and e2e latency.

For an enumerated space whose in-range accuracies are all known, the answer comes from an ``AnswerIndex`` kept
in ``ctx.index_cache`` under ``ctx.index_key`` (the caller's identity of fit + checkpoint + accuracy metric):
a new key, not a mutation, is what invalidates it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from core.errors import AmoebaError, ConfigError
from core.search.accuracy import AccuracyRecord
from core.search.index import AnswerIndex, IndexCache
from core.search.objectives import get_objective
from core.search.optuna_search import OptunaConfig
from core.search.pareto import neighbours
from core.search.query import Answer, Budget, Found, ShapeResult, check_budget
from core.search.searchers import Problem, get_searcher
from core.search.shapes import LatencyView, SearchSpace, Shape

FRONT_ENUMERATION_LIMIT = 20_000
"""Spaces larger than this are not enumerated (no feasibility pass, no index; Optuna searches them)."""

_DIMS_RE = re.compile(r"^(?P<t>\S+) L(?P<L>\d+) h(?P<h>\d+) heads(?P<q>\d+)/kv(?P<kv>\d+) d(?P<d>\d+) ffn(?P<f>\d+) vocab(?P<v>\d+)$")
MODEL_DIMS = ("model_type", "num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size", "vocab_size")


@dataclass(frozen=True)
class ModelFingerprint:
    """What a latency profile was measured for: the architecture dimensions and (when known) the config hash."""

    model_type: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    config_sha256: str | None = None

    @classmethod
    def of(cls, obj: Any, config_sha256: str | None = None) -> ModelFingerprint:
        """From anything with the dimension attributes (``ModelInfo``, a table's ``ModelFacts``) or a mapping."""
        get = obj.get if isinstance(obj, Mapping) else lambda k, d=None: getattr(obj, k, d)
        sha = config_sha256 if config_sha256 is not None else get("config_sha256", None)
        try:
            dims = {k: int(get(k)) for k in MODEL_DIMS[1:]}  # type: ignore[arg-type]
            return cls(model_type=str(get("model_type")), config_sha256=sha, **dims)
        except (TypeError, ValueError):
            raise ConfigError(f"model facts lack dimensions: need {', '.join(MODEL_DIMS)}") from None

    @classmethod
    def from_dims(cls, text: str, config_sha256: str | None = None) -> ModelFingerprint:
        """Parse ``dims`` text back (``llama L12 h256 heads16/kv8 d16 ffn768 vocab8192``)."""
        m = _DIMS_RE.match(text)
        if m is None:
            raise ConfigError(f"bad model dimensions text {text!r}")
        dims = {name: int(m[k]) for name, k in zip(MODEL_DIMS[1:], ("L", "h", "q", "kv", "d", "f", "v"), strict=True)}
        return cls(model_type=m["t"], config_sha256=config_sha256, **dims)

    @property
    def dims(self) -> str:
        """Canonical text of the dimensions, e.g. ``llama L12 h256 heads16/kv8 d16 ffn768 vocab8192``."""
        return (f"{self.model_type} L{self.num_layers} h{self.hidden_size} heads{self.num_heads}/kv{self.num_kv_heads} "
                f"d{self.head_dim} ffn{self.intermediate_size} vocab{self.vocab_size}")

    def describe(self) -> str:
        return self.dims + (f" config {self.config_sha256[:12]}" if self.config_sha256 else "")

    def differences(self, other: ModelFingerprint) -> list[str]:
        """Why ``self`` and ``other`` are different models (empty when they are the same model).

        Config hashes are compared only when both are known (older tables do not record one).
        """
        out = [f"{k} {getattr(self, k)} vs {getattr(other, k)}" for k in MODEL_DIMS if getattr(self, k) != getattr(other, k)]
        if self.config_sha256 and other.config_sha256 and self.config_sha256 != other.config_sha256:
            out.append(f"config sha256 {self.config_sha256[:12]} vs {other.config_sha256[:12]}")
        return out


class ModelMismatch(ConfigError):
    """A latency profile measured for another model than the checkpoint's; names both."""

    def __init__(self, profile: ModelFingerprint, checkpoint: ModelFingerprint, what: str = "the profile table") -> None:
        diffs = "; ".join(profile.differences(checkpoint))
        super().__init__(f"{what} was measured for another model: {profile.describe()!r}, the checkpoint is {checkpoint.describe()!r} ({diffs})")
        self.profile, self.checkpoint = profile, checkpoint


def check_model(profile: ModelFingerprint | None, checkpoint: ModelFingerprint | None, what: str = "the profile table") -> None:
    """Raise ``ModelMismatch`` when both are known and differ."""
    if profile is not None and checkpoint is not None and profile.differences(checkpoint):
        raise ModelMismatch(profile, checkpoint, what)


class AccuracyPending(AmoebaError):
    """Some feasible shapes have no known accuracy and this query may not evaluate them (the service)."""

    def __init__(self, missing: int, feasible: int) -> None:
        super().__init__(f"accuracy of {missing} of {feasible} feasible shapes is not computed yet")
        self.missing, self.feasible = missing, feasible


class AccuracyProvider(Protocol):
    """What the pipeline reads accuracies from (``AccuracyTable`` is one)."""

    def snapshot(self, shapes: Iterable[Shape]) -> dict[str, AccuracyRecord]:
        """Every known record among ``shapes`` by shape key, in one bulk read."""
        ...

    def record(self, shape: Shape) -> AccuracyRecord:
        """The record of ``shape``, evaluating it when unknown."""
        ...


class SnapshotSource:
    """An ``AccuracySource`` over one bulk snapshot; unknown shapes are evaluated through ``provider`` if allowed."""

    def __init__(self, records: dict[str, AccuracyRecord], provider: AccuracyProvider | None) -> None:
        self.records, self.provider = records, provider
        self._evaluations = 0

    @property
    def evaluations(self) -> int:
        return self._evaluations

    def known(self, shape: Shape) -> float | None:
        r = self.records.get(shape.key)
        return None if r is None else r.accuracy

    def raw(self, shape: Shape) -> float | None:
        return _raw(self.records, shape.key)

    def accuracy(self, shape: Shape) -> float:
        r = self.records.get(shape.key)
        if r is None:
            if self.provider is None:
                raise AccuracyPending(1, 1)
            r = self.records[shape.key] = self.provider.record(shape)
            self._evaluations += 1
        return r.accuracy


@dataclass(frozen=True)
class Query:
    """A budget, the objective to maximise under it, the searcher (``auto``: the index when the accuracies are
    all known, else exhaustive for enumerable spaces and Optuna otherwise) and how many neighbours to list."""

    budget: Budget
    objective: str = "accuracy"
    method: str = "auto"
    k_neighbours: int = 2
    optuna: OptunaConfig | None = None


@dataclass
class SearchContext:
    """Everything a query runs against. ``evaluate=False``: never evaluate an accuracy (raise ``AccuracyPending``)."""

    space: SearchSpace
    view_fn: Callable[[], LatencyView]
    accuracy: AccuracyProvider
    evaluate: bool = True
    profile_model: ModelFingerprint | None = None
    checkpoint_model: ModelFingerprint | None = None
    index_cache: IndexCache | None = None
    index_key: Hashable | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    on_step: Callable[[int, int], None] | None = None
    _view: LatencyView | None = None

    @property
    def view(self) -> LatencyView:
        if self._view is None:
            self._view = self.view_fn()
        return self._view


def run_query(ctx: SearchContext, query: Query) -> Answer:
    """The objective's best feasible shape under ``query.budget``, or ``Infeasible`` (see the module docstring)."""
    t0 = time.perf_counter()
    check_model(ctx.profile_model, ctx.checkpoint_model)
    objective = get_objective(query.objective)
    objective.validate(query.budget)
    budget, method = query.budget, query.method
    key = None if ctx.index_key is None else (ctx.index_key, budget.metric, objective.name)
    if method in ("auto", "index") and ctx.index_cache is not None and key is not None:
        idx = ctx.index_cache.get(key)
        if idx is not None:
            return _timed(idx.answer(budget, query.k_neighbours), t0)
    view, space = ctx.view, ctx.space
    enumerable = len(space) <= FRONT_ENUMERATION_LIMIT
    infeasible = check_budget(space if enumerable and budget.limits else space.base, view, budget)
    if infeasible is not None:
        return infeasible
    g = view.gen_len
    rows = [(s, e) for s in (space if enumerable else space.base) if (e := view.estimate(s)).in_range]
    feasible = [(s, e) for s, e in rows if budget.feasible(e, g)] if enumerable else None
    records = ctx.accuracy.snapshot(s for s, _ in rows)
    complete = all(s.key in records for s, _ in rows)
    if method == "auto":
        method = ("index" if complete else "exhaustive") if enumerable else "optuna"
    if method == "index":
        if not (enumerable and complete):
            raise ConfigError("the index needs an enumerable space with every accuracy known (fill the accuracy table first)")
        idx = AnswerIndex(space, view, budget.metric, objective, [(s, e, records[s.key].accuracy, _raw(records, s.key)) for s, e in rows])
        if ctx.index_cache is not None and key is not None:
            ctx.index_cache.put(key, idx)
        return _timed(idx.answer(budget, query.k_neighbours), t0)
    if not ctx.evaluate and feasible is not None:
        missing = sum(1 for s, _ in feasible if s.key not in records)
        if missing:
            raise AccuracyPending(missing, len(feasible))
    source = SnapshotSource(records, ctx.accuracy if ctx.evaluate else None)
    ev0 = source.evaluations
    problem = Problem(space, view, source, budget, objective, feasible, query.optuna, ctx.attrs, ctx.on_step)
    outcome = get_searcher(method).search(problem)
    if outcome.best is None:
        raise ConfigError(f"searcher {method!r} found no feasible shape although the range check passed")
    known = [ShapeResult.of(s, e, budget.metric, g, source.known(s), source.raw(s)) for s, e in rows if source.known(s) is not None]
    front = objective.front(known + [r for r in outcome.evaluated if r.accuracy is not None])
    front = sorted(front, key=lambda p: (p.latency_ms, -objective.score(p), p.shape))
    notes: list[str] = []
    if not enumerable:
        notes.append(f"space of {len(space)} shapes: the front covers the uniform shapes and the evaluated ones")
    best = outcome.best if outcome.best.accuracy_raw is not None else replace(outcome.best, accuracy_raw=_raw(records, outcome.best.shape))
    near = neighbours(front, best.latency_ms, query.k_neighbours, exclude=best.shape)
    full = enumerable and all(source.known(s) is not None for s, _ in rows)
    return Found(budget, best, near, front, full, method, source.evaluations - ev0, outcome.trials, time.perf_counter() - t0, notes=notes)


def _raw(records: Mapping[str, AccuracyRecord], key: str) -> float | None:
    r = records.get(key)
    return None if r is None or not math.isfinite(r.raw) else r.raw


def _timed(ans: Answer, t0: float) -> Answer:
    return replace(ans, elapsed_s=time.perf_counter() - t0) if isinstance(ans, Found) else ans
