"""Search requests: resolve (device, engine, workload), check the budget, answer from the accuracy table.

Accuracy evaluation is long work: when the table lacks a feasible shape, an ``accuracy`` job is queued and
the request gets 503 + Retry-After (the serve command queues it at start, so this is rare).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from core.search.accuracy import AccuracyTable
from core.search.answer import answer_query, known_points
from core.search.optuna_search import OptunaConfig
from core.search.pareto import pareto_front
from core.search.query import Budget, Found, ShapeResult, check_budget
from core.search.shapes import LatencyView, Shape, UniformSpace
from server.db.models import Device, Engine, Search, Subnet, Workload
from server.errors import BuildFailed, Infeasible, NotReady
from server.services import jobs
from server.services.accuracy import ACCURACY, AccuracyService
from server.services.artifacts import get_or_create_subnet
from server.services.devices import get_device, get_engine, get_workload
from server.services.latency import latency_model


@dataclass(frozen=True)
class SearchResult:
    search: Search
    subnet: Subnet
    found: Found


@dataclass(frozen=True)
class NoFit:
    """An infeasible query (recorded like any other); ``error`` is raised by the caller after commit."""

    search: Search
    error: Infeasible


class CachedOnly:
    """An ``AccuracySource`` that never evaluates (so requests never touch the model or wait for its lock)."""

    def __init__(self, table: AccuracyTable) -> None:
        self.table = table

    @property
    def evaluations(self) -> int:
        return 0

    def known(self, shape: Shape) -> float | None:
        return self.table.known(shape)

    def accuracy(self, shape: Shape) -> float:
        acc = self.table.known(shape)
        if acc is None:
            raise NotReady(f"accuracy of {shape.key} is not computed yet", retry_after_s=5, status="computing accuracy", http_status=503)
        return acc


def resolve(s: Session, device: str, engine: str, workload: str) -> tuple[Device, Engine, Workload]:
    """The three rows, or ``NotFound`` naming the first unknown one."""
    return get_device(s, device), get_engine(s, engine), get_workload(s, workload)


def search(s: Session, acc: AccuracyService, device: str, engine: str, workload: str, budget: Budget, *,
           optuna: OptunaConfig | None = None) -> SearchResult | NoFit:
    """The most accurate feasible shape, or ``NoFit`` naming the fastest latency; both recorded in ``searches``.

    Exhaustive (exact) by default; with ``optuna`` the study named after the query lives in its storage.
    """
    t0 = time.perf_counter()
    dev, eng, wl = resolve(s, device, engine, workload)
    view = LatencyView(latency_model(s, dev, eng, wl))
    space = UniformSpace(acc.space)
    request: dict[str, Any] = {"device": dev.name, "engine": eng.name, "workload": wl.key, "budget": {"latency_ms": budget.latency_ms, "metric": budget.metric},
               "memory_mb": budget.memory_mb}
    bad = check_budget(space.base, view, budget)
    if bad is not None:
        row = _record(s, dev, eng, wl, request, bad.to_dict(), None, t0)
        fastest = bad.fastest
        return NoFit(row, Infeasible(bad.message, {"reason": bad.reason, "metric": budget.metric, "budget_ms": budget.latency_ms,
                                       "fastest_ms": bad.fastest_latency_ms, "fastest_shape": fastest.shape if fastest else None,
                                       "min_peak_mem_mb": bad.min_peak_mem_mb}))
    table = acc.table()
    feasible = [sh for sh in space if budget.feasible(view.estimate(sh), view.gen_len)]
    missing = table.missing(feasible)
    if missing:
        job = jobs.enqueue(s, ACCURACY, acc.job_key(), {}, rearm=True)
        if job.status == "failed":
            raise BuildFailed(f"the accuracy table could not be computed: {job.error}")
        raise NotReady(f"accuracy of {len(missing)} of {len(feasible)} feasible shapes is being computed; retry shortly",
                       retry_after_s=5, status="computing accuracy", http_status=503)
    if optuna is not None and optuna.storage is not None:
        ident = json.dumps([acc.checkpoint_sha256, request], sort_keys=True).encode()
        optuna = replace(optuna, study_name=f"amoeba-search-{hashlib.sha256(ident).hexdigest()[:24]}")
    found = answer_query(space, view, CachedOnly(table), budget, method="optuna" if optuna else "exhaustive", optuna=optuna,  # type: ignore[arg-type]
                         attrs={"checkpoint": acc.checkpoint_sha256, "request": request})
    assert isinstance(found, Found)  # the budget check above passed
    sub = get_or_create_subnet(s, acc.checkpoint_sha256, acc.space.validate(found.best.shape))
    row = _record(s, dev, eng, wl, request, found.to_dict(), sub, t0)
    return SearchResult(row, sub, found)


def _record(s: Session, dev: Device, eng: Engine, wl: Workload, request: dict[str, Any], answer: dict[str, Any],
            sub: Subnet | None, t0: float) -> Search:
    row = Search(device=dev, engine=eng, workload=wl, request=request, answer=answer, feasible=sub is not None,
                 subnet_id=sub.id if sub else None, duration_ms=(time.perf_counter() - t0) * 1000)
    s.add(row)
    s.flush()
    return row


def known(s: Session, acc: AccuracyService, device: str, engine: str, workload: str, metric: str = "tpot") -> list[ShapeResult]:
    """In-range shapes with a known accuracy and their predicted latency on ``metric`` (no evaluation)."""
    dev, eng, wl = resolve(s, device, engine, workload)
    view = LatencyView(latency_model(s, dev, eng, wl))
    Budget(1.0, metric)  # type: ignore[arg-type]  # validates the metric name
    pts, _complete = known_points(UniformSpace(acc.space), view, acc.table(), metric)  # type: ignore[arg-type]
    return pts


def pareto(s: Session, acc: AccuracyService, device: str, engine: str, workload: str, metric: str = "tpot") -> list[ShapeResult]:
    """The accuracy/latency front over in-range shapes with a known accuracy (no evaluation in the request)."""
    return pareto_front(known(s, acc, device, engine, workload, metric))
