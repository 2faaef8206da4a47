"""``amoeba serve`` and ``amoeba db upgrade|current``: the service's entry points (the service itself is ``server``)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import cli_errors, console, progress
from core.errors import AmoebaError


def register(app: typer.Typer) -> None:
    """Mount ``amoeba serve`` and ``amoeba db``."""
    app.command("serve")(serve)
    db = typer.Typer(no_args_is_help=True, help="Database schema (Alembic migrations).")
    db.command("upgrade")(db_upgrade)
    db.command("current")(db_current)
    app.add_typer(db, name="db")


@cli_errors
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (AMOEBA_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (AMOEBA_PORT)")] = None,
    migrate: Annotated[bool | None, typer.Option("--migrate/--no-migrate", help="run migrations first (default: only for the embedded SQLite)")] = None,
    bootstrap: Annotated[bool, typer.Option("--bootstrap/--no-bootstrap", help="register and profile this machine if it has no profile")] = True,
) -> None:
    """Serve the API and dashboard. With no configuration: migrate the SQLite DB, load the bundled checkpoint,
    profile this machine on the torch flow if needed, then serve."""
    import uvicorn

    from server.app import create_app
    from server.bootstrap import prepare
    from server.services.accuracy import ACCURACY_TABLE_FILE, warm_accuracy
    from server.settings import Settings

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    do_migrate = settings.database_url is None if migrate is None else migrate
    with progress() as bar:
        task = bar.add_task("profiling this machine", total=None, info="", visible=False)

        def on_shape(done: int, total: int, info: str) -> None:
            bar.update(task, completed=done, total=total, info=info, visible=True)

        prepared = prepare(settings, migrate=do_migrate, bootstrap=bootstrap and settings.bootstrap_profile, on_shape=on_shape)
    if prepared.admin_token:
        console.print(f"[bold]admin token (shown once, keep it): {prepared.admin_token}[/bold]  (user {settings.admin_user!r} for /admin)")
    if prepared.device_token:
        console.print(f"device {prepared.device!r} registered; its token (shown once): {prepared.device_token}")
    if prepared.device:
        console.print(f"this machine is device {prepared.device!r} (curl -s localhost:{settings.port}/v1/devices lists every device)")
    if prepared.profiled_shapes:
        console.print(f"profiled {prepared.device!r}: {prepared.profiled_shapes} shapes on {settings.bootstrap_engine} at {settings.bootstrap_workload}")
    app = create_app(settings)
    try:
        shipped = warm_accuracy(app)
        if shipped:
            console.print(f"accuracy: {shipped} shapes from the checkpoint's shipped table ({ACCURACY_TABLE_FILE})")
    except AmoebaError as e:
        console.print(f"[yellow]warning:[/yellow] accuracy table not queued: {e}", highlight=False)
    console.print(f"serving on http://{settings.host}:{settings.port}  (dashboard: /admin, API docs: /docs)")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=settings.access_log,
                backlog=settings.backlog, timeout_keep_alive=settings.keep_alive_s)


@cli_errors
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Migrate the database (AMOEBA_DATABASE_URL, default the SQLite file) to the latest schema."""
    from server.db.migrate import upgrade
    from server.settings import Settings

    settings = Settings()
    rev = upgrade(settings.db_url(), revision)
    console.print(f"database at revision {rev}")


@cli_errors
def db_current() -> None:
    """Print the database's schema revision and the latest one."""
    from server.db.migrate import current_revision, head_revision
    from server.db.session import make_engine
    from server.settings import Settings

    engine = make_engine(Settings().db_url())
    try:
        cur, head = current_revision(engine), head_revision()
    finally:
        engine.dispose()
    typer.echo(f"current: {cur or 'none'}  head: {head}" + ("" if cur == head else "  (run `amoeba db upgrade`)"))
