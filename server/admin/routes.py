"""/admin pages (HTTP Basic: the admin user and token) and /static/plotly.min.js (from the installed plotly)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from core.errors import AmoebaError
from server.admin.plots import pareto_figure_json
from server.api.deps import Admin, State
from server.api.devices import device_out
from server.db.models import Search
from server.services import devices as dev_svc
from server.services.latency import latest_fit

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)


@functools.cache
def plotly_js() -> bytes:
    """The plotly.js bundle shipped inside the installed plotly package (no CDN)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


@router.get("/static/plotly.min.js")
def plotly_bundle() -> Response:
    return Response(plotly_js(), media_type="application/javascript", headers={"Cache-Control": "public, max-age=86400"})


def _searches(state: State, limit: int = 50) -> list[dict[str, Any]]:
    state.search_log.flush()  # the newest searches too (the log is written in batches)
    with state.db.session() as s:
        rows = s.scalars(select(Search).order_by(Search.id.desc()).limit(limit)).all()
        out = []
        for r in rows:
            b = r.request.get("budget", {})
            limits = "".join(f", {k} ≤ {v:g}" for k, v in (b.get("limits") or {}).items())
            best = r.answer.get("best") or {}
            out.append({"created_at": r.created_at, "device": r.device.name, "engine": r.engine.name, "workload": r.workload.key,
                        "budget": f"{b.get('metric')} ≤ {b.get('latency_ms')} ms{limits}", "subnet_id": r.subnet_id, "shape": best.get("shape"),
                        "duration_ms": r.duration_ms})
        return out


@router.get("/admin", response_class=HTMLResponse, dependencies=[Admin])
def index(request: Request, state: State) -> HTMLResponse:
    with state.db.session() as s:
        devices = [device_out(d) for d in dev_svc.list_devices(s)]
    try:
        sha = state.runtime.sha256
    except AmoebaError:
        sha = None
    ctx = {"devices": devices, "searches": _searches(state, 20), "checkpoint": str(state.runtime.path), "checkpoint_sha256": sha}
    return templates.TemplateResponse(request, "index.html", ctx)


@router.get("/admin/searches", response_class=HTMLResponse, dependencies=[Admin])
def searches(request: Request, state: State) -> HTMLResponse:
    return templates.TemplateResponse(request, "searches.html", {"searches": _searches(state, 200)})


@router.get("/admin/devices/{name}", response_class=HTMLResponse, dependencies=[Admin])
def device_page(name: str, request: Request, state: State, metric: str = "tpot") -> HTMLResponse:
    plots = []
    with state.db.session() as s:
        dev = dev_svc.get_device(s, name)
        out = device_out(dev)
        pairs = sorted({(p.engine.name, p.workload.key): p for p in dev.profiles}.items())
        for (engine, workload), prof in pairs:
            plot: dict[str, Any] = {"engine": engine, "workload": workload, "figure": None, "note": "", "fit": None}
            try:
                known, front = state.search.known(name, engine, workload, metric)
                if front:
                    plot["figure"] = pareto_figure_json(known, front, f"{name} · {engine} · {workload}", metric)
                else:
                    plot["note"] = "no shape with a known accuracy yet (the accuracy table is being computed)"
                fit = latest_fit(s, dev, prof.engine, prof.workload)
                if fit is not None and fit.mape is not None and fit.within_10pct is not None:
                    plot["fit"] = {"mape": fit.mape, "within": fit.within_10pct, "busy": fit.includes_busy}
            except AmoebaError as e:
                plot["note"] = str(e)
            plots.append(plot)
    return templates.TemplateResponse(request, "device.html", {"device": out, "plots": plots})
