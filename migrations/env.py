"""Alembic environment: the URL comes from ``config.attributes['url']`` (set by ``server.db.migrate``)
or from ``sqlalchemy.url`` in alembic.ini / ``AMOEBA_DATABASE_URL``."""

from __future__ import annotations

from alembic import context

from server.db import models  # noqa: F401  (registers the tables on Base.metadata)
from server.db.base import Base
from server.db.session import make_engine

config = context.config
target = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        from server.settings import Settings

        url = Settings().db_url()
    return str(url)


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(_url())
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target, render_as_batch=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
