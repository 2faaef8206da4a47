"""/healthz (the process answers) and /readyz (database migrated, checkpoint present, workers alive)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from core.errors import AmoebaError
from server.api.deps import State
from server.db.migrate import require_migrated

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(state: State) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        require_migrated(state.db.engine)
        checks["database"] = "ok"
    except (AmoebaError, SQLAlchemyError) as e:
        checks["database"] = f"error: {e}"
    ckpt = state.runtime.path
    checks["checkpoint"] = "ok" if ckpt.is_dir() else f"missing: {ckpt}"
    checks["worker"] = "ok" if state.worker.alive or state.settings.worker_threads == 0 else "stopped"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)
