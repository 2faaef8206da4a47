"""The FastAPI application factory: ``create_app(settings)``. Refuses an un-migrated database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from server.api import devices, health, search, subnets
from server.api.body import StrictBodyMiddleware
from server.api.errors import install_error_handler
from server.db.migrate import require_migrated
from server.db.session import Database
from server.jobs_wiring import job_handlers
from server.runtime import Runtime
from server.services.accuracy import AccuracyService, MetricFactory, default_metric_factory
from server.services.admin import admin_verifier
from server.services.artifacts import clean_stale_builds
from server.services.search import SearchService
from server.services.search_log import SearchLog
from server.settings import Settings
from server.state import AppState
from server.worker import JobWorker

API_VERSION = "1.0.0"


def create_app(settings: Settings, *, runtime: Runtime | None = None, metric_factory: MetricFactory | None = None) -> FastAPI:
    """Build the app for ``settings``. Raises ``DatabaseNotMigrated`` (how to fix it in the message).

    ``runtime`` / ``metric_factory`` override the checkpoint and the accuracy metric (tests).
    """
    settings.resolved_var_dir().mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url(), settings.db_pool_size)
    try:
        require_migrated(db.engine)
        admin_hash = admin_verifier(db, settings)
    except BaseException:
        db.dispose()
        raise
    runtime = runtime or Runtime(settings.checkpoint_path(), settings.torch_threads)
    accuracy = AccuracyService(runtime, db, metric_factory or default_metric_factory(settings))
    log = SearchLog(db)
    state = AppState(settings=settings, db=db, admin_hash=admin_hash, runtime=runtime, accuracy=accuracy, worker=JobWorker(db, {}),
                     search_log=log, search=SearchService(db, runtime, accuracy, settings, log))
    state.worker = JobWorker(db, job_handlers(state), poll_s=settings.worker_poll_s, max_attempts=settings.job_max_attempts)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.worker_threads > 0:
            clean_stale_builds(settings.artifacts_path())
            state.worker.start(settings.worker_threads)
        log.start()
        try:
            yield
        finally:
            state.worker.stop()
            log.stop()
            db.dispose()

    app = FastAPI(
        title="Amoeba",
        version=API_VERSION,
        summary="Deployment-aware subnet search for LLMs (AmoebaLLM): the best shape per device, engine and latency budget.",
        lifespan=lifespan,
    )
    app.state.amoeba = state
    install_error_handler(app)
    app.add_middleware(StrictBodyMiddleware, max_bytes=settings.max_body_bytes)
    for module in (health, devices, search, subnets):
        app.include_router(module.router)
    from server.admin import routes as admin_routes

    app.include_router(admin_routes.router)
    document_profile_table(app)
    return app


def document_profile_table(app: FastAPI) -> None:
    """Put the profile table's JSON schema (``profilers.table.ProfileTable``) into the OpenAPI components, so the
    upload body is documented as what the service validates (the route parses it itself, strictly)."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from profilers.table import ProfileTable

            doc = base()
            table = ProfileTable.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(table.pop("$defs", {}))
            schemas["ProfileTable"] = table
            upload = doc["paths"]["/v1/devices/{name}/profiles"]["post"]
            upload["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ProfileTable"}}}}
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
