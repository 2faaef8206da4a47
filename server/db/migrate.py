"""Alembic entry points (the migration scripts ship inside the ``migrations`` package)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from server.errors import DatabaseNotMigrated


def alembic_config(url: str) -> Config:
    """Alembic config for ``url`` without any ini file (works from an installed package)."""
    import migrations

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(next(iter(migrations.__path__)))))
    cfg.attributes["url"] = url
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str, revision: str = "head") -> str | None:
    """Migrate the database at ``url`` to ``revision``; returns the new current revision."""
    command.upgrade(alembic_config(url), revision)
    from server.db.session import make_engine

    engine = make_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def require_migrated(engine: Engine) -> None:
    """Raise ``DatabaseNotMigrated`` (saying how to fix it) unless the schema is at the head revision."""
    cur, head = current_revision(engine), head_revision()
    if cur != head:
        where = engine.url.render_as_string(hide_password=True)
        raise DatabaseNotMigrated(
            f"database {where} is at revision {cur or 'none (empty)'}, expected {head}: run `amoeba db upgrade` (same AMOEBA_DATABASE_URL)"
        )
