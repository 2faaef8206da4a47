"""/healthz (the process answers) and /readyz (ready only when a search can be answered, else what it waits for)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from core.errors import AmoebaError
from server.api.deps import State
from server.db.migrate import require_migrated

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": "not ready: the failing checks say why"}})
def readyz(state: State) -> JSONResponse:
    """``ready`` once the database is migrated, the checkpoint is readable, the workers run and the accuracy
    table of the checkpoint's whole shape space is computed (a search can then answer from its index)."""
    checks: dict[str, str] = {}
    try:
        require_migrated(state.db.engine)
        checks["database"] = "ok"
    except (AmoebaError, SQLAlchemyError) as e:
        checks["database"] = f"error: {e}"
    try:
        state.runtime.identity()
        checks["checkpoint"] = "ok"
    except AmoebaError as e:
        checks["checkpoint"] = f"missing: {e}"
    checks["worker"] = "ok" if state.worker.alive or state.settings.worker_threads == 0 else "stopped"
    if checks["checkpoint"] == "ok" and checks["database"] == "ok":
        try:
            total = len(state.runtime.space)
            missing = 0 if state.accuracy.complete() else state.accuracy.missing()
            checks["accuracy"] = "ok" if missing == 0 else f"computing: {total - missing} of {total} shapes done"
        except (AmoebaError, SQLAlchemyError) as e:
            checks["accuracy"] = f"error: {e}"
    else:
        checks["accuracy"] = "waiting for the database and the checkpoint"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)
