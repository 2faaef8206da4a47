"""POST /v1/search and GET /v1/devices/{name}/pareto."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request

from core.search.optuna_search import OptunaConfig
from core.search.query import Budget, ShapeResult
from server.api.deps import State
from server.api.schemas import ErrorOut, Infeasible, Latency, ParetoOut, SearchAnswer, SearchRequest, ShapePoint
from server.services import search as svc

router = APIRouter(tags=["search"])


def artifact_url(request: Request, public_url: str | None, subnet_id: int) -> str:
    base = (public_url or str(request.base_url)).rstrip("/")
    return f"{base}/v1/subnets/{subnet_id}/artifact"


def point(r: ShapeResult) -> ShapePoint:
    return ShapePoint(shape=r.shape, accuracy=float(r.accuracy or 0.0), latency_ms=r.latency_ms)


@router.post("/v1/search", response_model=SearchAnswer,
             responses={404: {"model": ErrorOut}, 422: {"model": Infeasible, "description": "no shape fits the budget"},
                        503: {"model": ErrorOut, "description": "predictor or accuracy table still being computed (Retry-After)"}})
def search(body: SearchRequest, request: Request, state: State) -> SearchAnswer:
    """The most accurate shape whose predicted latency fits the budget on (device, engine, workload).

    422 when infeasible, with the fastest achievable latency and its shape; 404 for an unknown device,
    engine or workload.
    """
    budget = Budget(body.budget.latency_ms, body.budget.metric, body.memory_mb)
    cfg = state.settings
    optuna = OptunaConfig(n_trials=cfg.search_trials, storage=cfg.optuna_url(), study_name="amoeba-search") if cfg.search_method == "optuna" else None
    with state.db.session() as s:
        res = svc.search(s, state.accuracy, body.device, body.engine, body.workload, budget, optuna=optuna)
        if isinstance(res, svc.NoFit):
            error = res.error
        else:
            b, wl = res.found.best, res.search.workload
            spec = state.accuracy.space.validate(b.shape)
            rec = state.accuracy.cache.get(state.accuracy.table().key(spec))
            return SearchAnswer(
                search_id=res.search.id, subnet_id=res.subnet.id, shape=b.shape, num_layers=spec.num_layers, attn_width=spec.attn_width,
                ffn_width=spec.ffn_width, metric=budget.metric, budget_ms=budget.latency_ms, latency_ms=b.latency_ms,
                predicted=Latency(ttft_ms=b.ttft_ms, tpot_ms=b.tpot_ms, e2e_ms=b.ttft_ms + max(0, wl.gen_len - 1) * b.tpot_ms,
                                  peak_mem_mb=b.peak_mem_mb, in_range=b.in_range),
                accuracy=float(b.accuracy or 0.0), accuracy_raw=rec.raw if rec else None, accuracy_metric=state.accuracy.metric().name,
                neighbours=[point(n) for n in res.found.neighbours], artifact_url=artifact_url(request, state.settings.public_url, res.subnet.id),
                duration_ms=res.search.duration_ms,
            )
    raise error  # after the commit: infeasible searches are recorded too


@router.get("/v1/devices/{name}/pareto", response_model=ParetoOut, tags=["devices"], responses={404: {"model": ErrorOut}})
def pareto(name: str, state: State, engine: str = Query(...), workload: str = Query(...),
           metric: Literal["tpot", "ttft", "e2e"] = Query("tpot")) -> ParetoOut:
    """Accuracy vs predicted latency front of the checkpoint's shapes on (device, engine, workload)."""
    with state.db.session() as s:
        front = svc.pareto(s, state.accuracy, name, engine, workload, metric)
    return ParetoOut(device=name, engine=engine, workload=workload, metric=metric, points=[point(p) for p in front])
