"""Engine and session helpers. One ``Database`` per app, created from ``Settings`` and passed explicitly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

POOL_SIZE = 16
"""Connections kept per engine: more than the request threads that touch the database at once (the search
fast path holds one for two short reads); ``max_overflow`` as many again, then a request waits ``POOL_TIMEOUT_S``
and gets 503 + Retry-After."""
POOL_TIMEOUT_S = 10.0
SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, pool_size: int = POOL_SIZE) -> Engine:
    """An engine for ``url`` with a sized pool; SQLite gets foreign keys, WAL, ``synchronous=NORMAL`` (durable
    at each checkpoint, never corrupt) and a busy timeout (writers wait instead of failing)."""
    u = make_url(url)
    pool = {"pool_size": pool_size, "max_overflow": pool_size, "pool_timeout": POOL_TIMEOUT_S}
    if u.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **pool)  # type: ignore[arg-type]
    memory = not u.database or u.database == ":memory:"
    if not memory:
        Path(str(u.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                           **({} if memory else pool))  # type: ignore[arg-type]

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    return engine


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any error (except ``CommitsWork`` errors, which commit)."""
        from server.errors import CommitsWork

        with self.sessions() as s:
            try:
                yield s
                s.commit()
            except CommitsWork:
                s.commit()
                raise
            except BaseException:
                s.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
