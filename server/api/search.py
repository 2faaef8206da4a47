"""POST /v1/search and GET /v1/devices/{name}/pareto: thin adapters of ``SearchService`` (core.search.pipeline)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from core.search.query import Budget, ShapeResult
from core.spec import SubnetSpec
from server.api.deps import State
from server.api.schemas import ErrorOut, Infeasible, Latency, ParetoOut, SearchAnswer, SearchRequest, ShapePoint
from server.services.search import SearchResult

router = APIRouter(tags=["search"])
COMMON: dict[int | str, dict[str, Any]] = {413: {"model": ErrorOut, "description": "request body too large"},
                                           503: {"model": ErrorOut, "description": "not ready yet (Retry-After)"}}


def artifact_url(request: Request, public_url: str | None, subnet_id: int) -> str:
    base = (public_url or str(request.base_url)).rstrip("/")
    return f"{base}/v1/subnets/{subnet_id}/artifact"


def point(r: ShapeResult) -> ShapePoint:
    return ShapePoint(shape=r.shape, accuracy_score=float(r.accuracy or 0.0), accuracy_value=r.accuracy_raw, latency_ms=r.latency_ms,
                      peak_mem_mb=r.peak_mem_mb)


def answer_out(res: SearchResult, objective: str, url: str) -> SearchAnswer:
    b, f = res.found.best, res.found
    spec = SubnetSpec.parse(b.shape)
    return SearchAnswer(search_id=res.search_id, subnet_id=res.subnet_id, shape=b.shape, num_layers=b.num_layers, attn_width=spec.attn_width,
                        ffn_width=spec.ffn_width, metric=f.budget.metric, budget_ms=f.budget.latency_ms, latency_ms=b.latency_ms,
                        predicted=Latency(ttft_ms=b.ttft_ms, tpot_ms=b.tpot_ms, e2e_ms=float(b.e2e_ms or 0.0), peak_mem_mb=b.peak_mem_mb, in_range=b.in_range),
                        objective=objective, accuracy_score=float(b.accuracy or 0.0), accuracy_value=b.accuracy_raw, accuracy_metric=res.accuracy_metric,
                        neighbours=[point(x) for x in f.neighbours], method=f.method, artifact_url=url, duration_ms=res.duration_ms)


@router.post("/v1/search", response_model=SearchAnswer,
             responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut, "description": "the device's profiles are of another model"},
                        422: {"model": Infeasible | ErrorOut, "description": "invalid request (field named) or no shape fits the budget"}, **COMMON})
async def search(body: SearchRequest, request: Request, state: State) -> SearchAnswer:
    """The most accurate shape whose predicted latency fits every budget on (device, engine, workload).

    422 when infeasible, with the fastest achievable latency and its shape; 404 for an unknown device, engine or
    workload; 409 when the device was profiled only for another model; 503 + Retry-After while fitting or computing.
    """
    budget = Budget(body.budget.latency_ms, body.budget.metric, body.memory_mb, tuple(body.budget.limits().items()))
    args = (body.device, body.engine, body.workload, budget, body.objective)
    res = state.search.search_cached(*args)
    if res is None:
        res = await run_in_threadpool(state.search.search, *args)
    return answer_out(res, body.objective, artifact_url(request, state.settings.public_url, res.subnet_id))


@router.get("/v1/devices/{name}/pareto", response_model=ParetoOut, tags=["devices"],
            responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}})
def pareto(name: str, state: State, engine: str = Query(..., max_length=64), workload: str = Query(..., max_length=64),
           metric: Literal["tpot", "ttft", "e2e"] = Query("tpot")) -> ParetoOut:
    """Accuracy vs predicted latency front of the checkpoint's shapes on (device, engine, workload)."""
    _, front = state.search.known(name, engine, workload, metric)
    return ParetoOut(device=name, engine=engine, workload=workload, metric=metric, points=[point(p) for p in front])
