"""The ONE place where domain errors (and framework / database errors) become HTTP responses.

Every error body is ``ErrorOut``: ``{"detail": "<message>", "field": ..., "status": ...}``. Request validation
errors name the first bad field and never echo the input back.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import AmoebaError, ConfigError, DataMissingError
from core.search.pipeline import ModelMismatch
from server.errors import BuildFailed, Conflict, DatabaseNotMigrated, Infeasible, Invalid, NotFound, NotReady, Unauthorized

MAX_DETAIL = 600


def error_response(request: Request, exc: AmoebaError) -> JSONResponse:
    """Map a domain error to status, body ``{"detail": message, ...}`` and headers."""
    body: dict[str, object] = {"detail": str(exc)[:MAX_DETAIL * 4]}
    headers: dict[str, str] = {}
    status = 500
    if isinstance(exc, NotFound):
        status = 404
    elif isinstance(exc, Unauthorized):
        status = 401
        admin = request.url.path.startswith("/admin")
        headers["WWW-Authenticate"] = 'Basic realm="amoeba-admin"' if admin else 'Bearer realm="amoeba"'
    elif isinstance(exc, Conflict | ModelMismatch):
        status = 409
    elif isinstance(exc, Infeasible):
        status = 422
        body.update(exc.detail)
    elif isinstance(exc, Invalid):
        status = 422
        body["field"] = exc.field
    elif isinstance(exc, ConfigError):  # covers profilers' TableError: the message names the field
        status = 422
    elif isinstance(exc, NotReady):
        status = exc.http_status
        body["status"] = exc.status
        headers["Retry-After"] = str(exc.retry_after_s)
    elif isinstance(exc, DatabaseNotMigrated | DataMissingError):
        status = 503
        headers["Retry-After"] = "30"
    elif isinstance(exc, BuildFailed):
        status = 500
    return JSONResponse(body, status_code=status, headers=headers)


def validation_response(exc: RequestValidationError) -> JSONResponse:
    """422 naming the first invalid field (``budget.latency_ms: Input should be greater than 0``), no input echo."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(x) for x in first.get("loc", ())]
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    field = ".".join(loc) or None
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")[:MAX_DETAIL]
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return JSONResponse({"detail": (f"{field}: {msg}" if field else msg) + more, "field": field}, status_code=422)


HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette answers only the first matching route's)."""
    from starlette.routing import Match

    scope = {k: v for k, v in request.scope.items() if k not in ("endpoint", "route", "path_params")}
    return [m for m in HTTP_METHODS if any(r.matches({**scope, "method": m})[0] == Match.FULL for r in request.app.router.routes)]


def install_error_handler(app: FastAPI) -> None:
    async def domain(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AmoebaError)
        return error_response(request, exc)

    async def validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_response(exc)

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=headers)

    async def database_busy(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"database busy, retry shortly ({type(exc).__name__})", "status": "busy"}, status_code=503,
                            headers={"Retry-After": "1"})

    app.add_exception_handler(AmoebaError, domain)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(PoolTimeout, database_busy)
    app.add_exception_handler(OperationalError, database_busy)
