"""The ONE place where domain errors become HTTP responses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from core.errors import AmoebaError, ConfigError, DataMissingError
from server.errors import BuildFailed, Conflict, DatabaseNotMigrated, Infeasible, Invalid, NotFound, NotReady, Unauthorized


def error_response(request: Request, exc: AmoebaError) -> JSONResponse:
    """Map a domain error to status, body ``{"detail": message, ...}`` and headers."""
    body: dict[str, object] = {"detail": str(exc)}
    headers: dict[str, str] = {}
    status = 500
    if isinstance(exc, NotFound):
        status = 404
    elif isinstance(exc, Unauthorized):
        status = 401
        admin = request.url.path.startswith("/admin")
        headers["WWW-Authenticate"] = 'Basic realm="amoeba-admin"' if admin else 'Bearer realm="amoeba"'
    elif isinstance(exc, Conflict):
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
    elif isinstance(exc, BuildFailed):
        status = 500
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handler(app: FastAPI) -> None:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AmoebaError)
        return error_response(request, exc)

    app.add_exception_handler(AmoebaError, handler)
