"""Search requests: the service's adapter of ``core.search.pipeline.run_query``.

One short read transaction resolves (device, engine, workload) to the newest profile of the served model and its
predictor fit; the pipeline answers from the ``AnswerIndex`` of (fit, checkpoint, accuracy metric, budget metric),
built on the first query after the fit or the accuracy table changes. Nothing is written on the request path
except, once, what is missing (a refit or accuracy job, a subnet row); the search log is written in batches
(``server.services.search_log``). Accuracy evaluation is long work: a query that needs an unknown accuracy queues
the ``accuracy`` job and gets 503 + Retry-After.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.search.index import IndexCache
from core.search.optuna_search import OptunaConfig
from core.search.pipeline import AccuracyPending, ModelFingerprint, ModelMismatch, Query, SearchContext, run_query
from core.search.query import Answer, Budget, Found, ShapeResult
from core.search.shapes import LatencyView, UniformSpace
from core.spec import SubnetSpec
from profilers.workload import Workload as WorkloadSpec
from server.db.models import Device, Engine, PredictorFit, Profile, Workload
from server.db.session import Database
from server.errors import BuildFailed, Conflict, Infeasible, NotFound, NotReady
from server.runtime import Runtime
from server.services import jobs
from server.services.accuracy import ACCURACY, AccuracyService
from server.services.artifacts import get_or_create_subnet
from server.services.devices import get_device, get_engine, get_workload
from server.services.profiles import REFIT
from server.services.search_log import SearchEntry, SearchLog
from server.settings import Settings


@dataclass(frozen=True)
class Resolved:
    """A query's rows and the profile / fit it is answered from."""

    device_id: int
    engine_id: int
    workload_id: int
    device: str
    engine: str
    workload: str
    gen_len: int
    profile_id: int
    fit_id: int
    profile_model: ModelFingerprint


@dataclass(frozen=True)
class SearchResult:
    search_id: str
    subnet_id: int
    found: Found
    accuracy_metric: str
    duration_ms: float


def profile_fingerprint(p: Profile) -> ModelFingerprint:
    """The model a stored profile was measured for."""
    return ModelFingerprint.of((p.document or {}).get("model") or {}, p.model_config_sha256)


def resolve(s: Session, device: str, engine: str, workload: str, model: ModelFingerprint) -> Resolved:
    """Rows of the query and the newest profile of ``model`` with its fit.

    ``NotFound`` naming the first unknown name, or when the device has no profile for (engine, workload);
    ``ModelMismatch`` (→ 409) when it has profiles but only for other models; ``NotReady`` while the fit runs.
    """
    dev, eng, wl = get_device(s, device), get_engine(s, engine), get_workload(s, workload)
    base = select(Profile).where(Profile.device_id == dev.id, Profile.engine_id == eng.id, Profile.workload_id == wl.id)
    prof = s.scalar(base.where(Profile.model_dims == model.dims).order_by(Profile.id.desc()).limit(1))
    if prof is not None and profile_fingerprint(prof).differences(model):  # same dims, another config
        prof = next((p for p in s.scalars(base.where(Profile.model_dims == model.dims).order_by(Profile.id.desc()))
                     if not profile_fingerprint(p).differences(model)), None)
    if prof is None:
        other = s.scalar(base.order_by(Profile.id.desc()).limit(1))
        if other is None:
            raise NotFound(f"device {dev.name!r} has no profile for engine {eng.name!r} and workload {wl.key!r}")
        raise ModelMismatch(profile_fingerprint(other), model, f"profile {other.id} of {dev.name}/{eng.name}/{wl.key}")
    fit = s.scalar(select(PredictorFit).where(PredictorFit.profile_id == prof.id).limit(1))
    if fit is None:
        job = jobs.enqueue(s, REFIT, f"{REFIT}:{prof.id}", {"profile_id": prof.id})
        if job.status == "failed":
            raise Conflict(f"profile {prof.id} of {dev.name}/{eng.name}/{wl.key} cannot be fitted: {job.error}")
        raise NotReady(f"the latency predictor of {dev.name}/{eng.name}/{wl.key} is being fitted; retry shortly",
                       retry_after_s=2, status="fitting", http_status=503)
    return Resolved(dev.id, eng.id, wl.id, dev.name, eng.name, wl.key, wl.gen_len, prof.id, fit.id, profile_fingerprint(prof))


def fast_resolve(conn: Connection, device: str, engine: str, workload: str, model: ModelFingerprint) -> Resolved | None:
    """The common case in ONE Core query (no ORM objects, no JSON documents): the newest profile of ``model``
    for (device, engine, workload) that has a fit. ``None`` sends the caller to ``resolve`` (errors, refit)."""
    q = (select(Device.id, Engine.id, Workload.id, Device.name, Engine.name, Workload.key, Workload.gen_len, Profile.id, PredictorFit.id,
                Profile.model_dims, Profile.model_config_sha256)
         .select_from(Profile).join(Device, Profile.device_id == Device.id).join(Engine, Profile.engine_id == Engine.id)
         .join(Workload, Profile.workload_id == Workload.id).outerjoin(PredictorFit, PredictorFit.profile_id == Profile.id)
         .where(Device.name == device, Engine.name == engine, Workload.key == workload, Profile.model_dims == model.dims)
         .order_by(Profile.id.desc()).limit(1))
    if model.config_sha256 is not None:
        q = q.where(or_(Profile.model_config_sha256.is_(None), Profile.model_config_sha256 == model.config_sha256))
    row = conn.execute(q).first()
    if row is None or row[8] is None:
        return None
    return Resolved(*row[:9], ModelFingerprint.from_dims(row[9], row[10]))  # type: ignore[arg-type]


def fit_view(db: Database, fit_id: int) -> LatencyView:
    """The latency view of a stored predictor fit (read only when an index is built)."""
    from profilers.predictor.model import LatencyPredictor
    from profilers.predictor.state import PredictorState

    with db.sessions() as s:
        state = s.get_one(PredictorFit, fit_id).state
    return LatencyView(LatencyPredictor(PredictorState.model_validate(state)))


class SearchService:
    """Answers queries for one app: resolution, the pipeline with its index cache, subnets, the search log."""

    def __init__(self, db: Database, runtime: Runtime, accuracy: AccuracyService, settings: Settings, log: SearchLog) -> None:
        self.db, self.runtime, self.accuracy, self.settings, self.log = db, runtime, accuracy, settings, log
        self.indexes = IndexCache()
        self._subnets: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._uid_prefix = uuid.uuid4().hex[:16]
        self._uid_counter = itertools.count(1)
        self._resolved: dict[tuple[str, str, str], tuple[Resolved, float]] = {}
        #: seconds, monotonic: when resolutions expire (a test replaces it to step time instead of sleeping)
        self.clock: Callable[[], float] = time.monotonic
        self._refreshing: set[tuple[str, str, str]] = set()

    def invalidate(self) -> None:
        """Forget cached resolutions (a profile was stored or a fit finished in this process)."""
        self._resolved = {}

    def context(self, r: Resolved) -> SearchContext:
        ident = self.runtime.identity()
        acc_id = self.accuracy.identity()
        return SearchContext(UniformSpace(ident.space), lambda: fit_view(self.db, r.fit_id), self.accuracy.cached(), evaluate=False,
                             profile_model=r.profile_model, checkpoint_model=ident.fingerprint, index_cache=self.indexes,
                             index_key=("fit", r.fit_id, *acc_id))

    def _canonical(self, device: str, engine: str, workload: str) -> tuple[str, str, str]:
        try:
            return device, engine, WorkloadSpec.parse(workload).key
        except ValueError:
            return device, engine, workload

    def cached_resolution(self, device: str, engine: str, workload: str) -> Resolved | None:
        """A resolution seen less than ``resolve_ttl_s`` ago (uploads and refits in this process clear them at once;
        the TTL bounds how long another process's new profile or fit goes unseen)."""
        key = self._canonical(device, engine, workload)
        hit = self._resolved.get(key)
        if hit is None:
            return None
        if hit[1] > self.clock():
            return hit[0]
        with self._lock:  # expired: one request refreshes it, the others keep the previous one meanwhile (no stampede)
            if key in self._refreshing:
                return hit[0]
            self._refreshing.add(key)
        return None

    def resolve(self, device: str, engine: str, workload: str) -> Resolved:
        model = self.runtime.identity().fingerprint
        key = self._canonical(device, engine, workload)
        try:
            with self.db.engine.connect() as conn:
                hit = fast_resolve(conn, *key, model)
            if hit is None:
                self._resolved.pop(key, None)  # e.g. a newer profile without its fit yet: nobody keeps the old one
            elif self.settings.resolve_ttl_s > 0:
                self._resolved[key] = (hit, self.clock() + self.settings.resolve_ttl_s)
        finally:
            self._refreshing.discard(key)
        if hit is not None:
            return hit
        with self.db.session() as s:  # commits only when a missing refit job was queued (NotReady commits work)
            return resolve(s, device, engine, workload, model)

    def answer(self, r: Resolved, query: Query) -> Answer:
        """The pipeline's answer; ``AccuracyPending`` queues the accuracy job (→ 503 + Retry-After)."""
        try:
            return run_query(self.context(r), query)
        except AccuracyPending as e:
            with self.db.session() as s:
                job = jobs.enqueue(s, ACCURACY, self.accuracy.job_key(), {}, rearm=True)
                if job.status == "failed":
                    raise BuildFailed(f"the accuracy table could not be computed: {job.error}") from None
            raise NotReady(f"{e}; retry shortly", retry_after_s=5, status="computing accuracy", http_status=503) from None

    def search_cached(self, device: str, engine: str, workload: str, budget: Budget, objective: str = "accuracy") -> SearchResult | None:
        """The answer when everything it needs is in memory (resolution, index, subnet id): no database, no
        blocking, so the route answers it on the event loop. ``None``: take ``search`` (in a worker thread).

        The index of a fit exists only after ``run_query`` built it, model check included, for that fit's profile.
        """
        t0 = time.perf_counter()
        r = self.cached_resolution(device, engine, workload)
        if r is None or self.settings.search_method == "optuna":
            return None
        idx = self.indexes.get((("fit", r.fit_id, *self.accuracy.identity()), budget.metric, objective))
        if idx is None:
            return None
        idx.objective.validate(budget)
        ans = idx.answer(budget)
        if isinstance(ans, Found) and (self.runtime.sha256, ans.best.shape) not in self._subnets:
            return None
        return self._finish(r, self._request(r, budget, objective), budget, ans, t0)

    def search(self, device: str, engine: str, workload: str, budget: Budget, objective: str = "accuracy") -> SearchResult:
        """The objective's best feasible shape; ``Infeasible`` (→ 422) names the fastest latency. Both are logged."""
        t0 = time.perf_counter()
        r = self.resolve(device, engine, workload)
        request = self._request(r, budget, objective)
        optuna = self._optuna(request)
        ans = self.answer(r, Query(budget, objective, "optuna" if optuna else "auto", 2, optuna))
        return self._finish(r, request, budget, ans, t0)

    @staticmethod
    def _request(r: Resolved, budget: Budget, objective: str) -> dict[str, Any]:
        return {"device": r.device, "engine": r.engine, "workload": r.workload, "objective": objective,
                "budget": {"latency_ms": budget.latency_ms, "metric": budget.metric, "limits": dict(budget.limits)}, "memory_mb": budget.memory_mb}

    def _finish(self, r: Resolved, request: dict[str, Any], budget: Budget, ans: Answer, t0: float) -> SearchResult:
        uid = self._uid()
        if not isinstance(ans, Found):
            self._log(uid, r, request, {"kind": ans.kind, "reason": ans.reason, "message": ans.message, "fastest_ms": ans.fastest_latency_ms}, None, t0)
            fastest = ans.fastest
            raise Infeasible(ans.message, {"reason": ans.reason, "metric": budget.metric, "budget_ms": budget.latency_ms,
                                           "fastest_ms": ans.fastest_latency_ms, "fastest_shape": fastest.shape if fastest else None,
                                           "min_peak_mem_mb": ans.min_peak_mem_mb})
        sid = self.subnet_id(ans.best.shape)
        b = ans.best
        summary = {"kind": ans.kind, "method": ans.method, "best": {"shape": b.shape, "latency_ms": b.latency_ms, "accuracy": b.accuracy},
                   "neighbours": [n.shape for n in ans.neighbours], "front_size": len(ans.front)}
        duration = self._log(uid, r, request, summary, sid, t0)
        return SearchResult(uid, sid, ans, self.accuracy.metric().name, duration)

    def _optuna(self, request: dict[str, Any]) -> OptunaConfig | None:
        cfg = self.settings
        if cfg.search_method != "optuna":
            return None
        ident = json.dumps([self.runtime.sha256, request], sort_keys=True).encode()
        return OptunaConfig(n_trials=cfg.search_trials, storage=cfg.optuna_url(), study_name=f"amoeba-search-{hashlib.sha256(ident).hexdigest()[:24]}")

    def _uid(self) -> str:
        """A unique search id: a per-process random prefix and a counter (no system call per request)."""
        return f"{self._uid_prefix}{next(self._uid_counter):016x}"

    def _log(self, uid: str, r: Resolved, request: dict[str, Any], answer: dict[str, Any], sid: int | None, t0: float) -> float:
        duration = (time.perf_counter() - t0) * 1000
        self.log.record(SearchEntry(uid, r.device_id, r.engine_id, r.workload_id, request, answer, sid is not None, sid, duration))
        return duration

    def subnet_id(self, shape: str) -> int:
        """The subnet row of ``shape`` on the served checkpoint (created once; cached in memory)."""
        key = (self.runtime.sha256, shape)
        sid = self._subnets.get(key)
        if sid is not None:
            return sid
        spec = self.runtime.space.validate(SubnetSpec.parse(shape))
        for attempt in range(3):
            try:
                with self.db.session() as s:
                    sid = get_or_create_subnet(s, key[0], spec).id
                break
            except IntegrityError:  # a concurrent request created it: read it on the next attempt
                if attempt == 2:
                    raise
        assert sid is not None
        with self._lock:
            self._subnets[key] = sid
        return sid

    def known(self, device: str, engine: str, workload: str, metric: str = "tpot") -> tuple[list[ShapeResult], list[ShapeResult]]:
        """In-range shapes with a known accuracy and their front on ``metric`` (no evaluation; from the index when built)."""
        Budget(1.0, metric)  # type: ignore[arg-type]  # validates the metric name
        r = self.resolve(device, engine, workload)
        ctx = self.context(r)
        from core.search.pipeline import check_model

        check_model(ctx.profile_model, ctx.checkpoint_model)
        key = (ctx.index_key, metric, "accuracy")
        idx = self.indexes.get(key)
        if idx is not None:
            return [x.result for x in idx.entries], list(idx.front)
        from core.search.objectives import get_objective

        view, g = ctx.view, r.gen_len
        rows = [(s, e) for s in ctx.space if (e := view.estimate(s)).in_range]
        records = ctx.accuracy.snapshot(s for s, _ in rows)
        pts = [ShapeResult.of(s, e, metric, g, records[s.key].accuracy, records[s.key].raw) for s, e in rows if s.key in records]  # type: ignore[arg-type]
        return pts, get_objective("accuracy").front(pts)

