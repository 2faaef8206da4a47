"""Migrations (schema == models, up/down), the un-migrated refusal, settings, admin secret, the job table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError
from server.db.migrate import current_revision, head_revision, require_migrated, upgrade
from server.db.session import Database
from server.errors import DatabaseNotMigrated
from tests.server.conftest import settings_for, sqlite_url


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from server.db import models  # noqa: F401
    from server.db.base import Base

    db = Database(db_url)
    try:
        assert current_revision(db.engine) == head_revision()
        require_migrated(db.engine)
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
    finally:
        db.dispose()


def test_unmigrated_database_is_refused_with_the_fix(tmp_path: Path) -> None:
    from server.app import create_app

    url = sqlite_url(tmp_path)
    with pytest.raises(DatabaseNotMigrated, match="amoeba db upgrade"):
        create_app(settings_for(tmp_path, url))
    upgrade(url)
    from alembic import command

    from server.db.migrate import alembic_config

    command.downgrade(alembic_config(url), "base")
    with pytest.raises(DatabaseNotMigrated, match="none"):
        create_app(settings_for(tmp_path, url))
    assert upgrade(url) == head_revision()


def test_settings_defaults_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.settings import Settings

    for k in ("AMOEBA_DATABASE_URL", "AMOEBA_CHECKPOINT", "AMOEBA_ADMIN_TOKEN", "AMOEBA_VAR_DIR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AMOEBA_DATA_DIR", "/somewhere/else")  # the shared data dir must not leak into the service's state dir
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.db_url() == f"sqlite:///{tmp_path / 'var' / 'amoeba.db'}" and s.artifacts_path() == tmp_path / "var" / "artifacts"
    assert s.optuna_url().endswith("var/optuna.db") and s.admin_token is None
    assert s.checkpoint_path().name in ("amoeba-smollm2-smol", "amoeba-tiny-smol", "amoeba-tiny-base")
    monkeypatch.setenv("AMOEBA_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("AMOEBA_ADMIN_TOKEN", "s3cret-token")
    monkeypatch.setenv("AMOEBA_WORKER_THREADS", "2")
    s = Settings()
    assert s.db_url() == "postgresql+psycopg://u@h/db" and s.worker_threads == 2
    assert "s3cret" not in repr(s) and s.admin_token is not None and s.admin_token.get_secret_value() == "s3cret-token"
    monkeypatch.setenv("AMOEBA_WORKER_THREADS", "-1")
    with pytest.raises(ValueError, match="worker_threads"):
        Settings()


def test_generated_admin_secret_is_returned_once(tmp_path: Path) -> None:
    from server.auth import verify_token
    from server.services.admin import admin_verifier, ensure_admin_secret

    url = sqlite_url(tmp_path)
    upgrade(url)
    db = Database(url)
    settings = settings_for(tmp_path, url, admin_token=None)
    with pytest.raises(ConfigError, match="AMOEBA_ADMIN_TOKEN"):
        admin_verifier(db, settings)
    token = ensure_admin_secret(db, settings)
    assert token and ensure_admin_secret(db, settings) is None
    assert verify_token(token, admin_verifier(db, settings))
    with pytest.raises(ConfigError, match="at least 8"):
        admin_verifier(db, settings_for(tmp_path, url, admin_token="short"))
    db.dispose()


def test_jobs_claimed_once_retried_then_failed(db_url: str) -> None:
    from server.db.models import Job
    from server.services import jobs
    from server.worker import JobWorker

    db = Database(db_url)
    try:
        with db.session() as s:
            jobs.enqueue(s, "boom", "boom:1", {"n": 1})
            jobs.enqueue(s, "boom", "boom:1", {"n": 1})  # deduplicated by key
            jobs.enqueue(s, "ok", "ok:1", {"n": 2})
        with db.sessions() as s1, db.sessions() as s2:
            a, b = jobs.claim(s1), jobs.claim(s2)
            assert a is not None and b is not None and a.id != b.id  # two claimers never get the same job
            assert jobs.claim(s1) is None
        with db.session() as s:
            assert jobs.requeue_interrupted(s) == 2
        calls: list[Any] = []

        def boom(payload: dict[str, Any]) -> None:
            calls.append(payload)
            raise ConfigError("bad input for the job")

        w = JobWorker(db, {"boom": boom, "ok": calls.append}, max_attempts=2)
        assert w.drain() == 2  # the interrupted claim counted as boom's first attempt: one retry, then ok
        with db.sessions() as s:
            by_key = {j.key: j for j in s.query(Job)}
        assert by_key["boom:1"].status == "failed" and by_key["boom:1"].attempts == 2 and "bad input" in str(by_key["boom:1"].error)
        assert by_key["ok:1"].status == "done" and sorted(c["n"] for c in calls) == [1, 2]
        with db.session() as s:
            assert jobs.enqueue(s, "boom", "boom:1", rearm=True).status == "failed"  # failed jobs are not silently retried
            assert jobs.enqueue(s, "ok", "ok:1", rearm=True).status == "pending"
    finally:
        db.dispose()


def test_migration_0002_binds_existing_profiles_to_their_model(db_url: str) -> None:
    """Profiles stored before 0002 get their model from the stored document; downgrade and upgrade again work."""
    import json

    import sqlalchemy as sa
    from alembic import command

    from server.db.migrate import alembic_config
    from tests.factories import make_table

    cfg = alembic_config(db_url)
    command.downgrade(cfg, "0001")
    engine = sa.create_engine(db_url)
    doc = make_table()
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO devices (id, name, hardware, token_hash, created_at) VALUES (1, 'd', '{}', 'h', CURRENT_TIMESTAMP)"))
        c.execute(sa.text("INSERT INTO engines (id, name, created_at) VALUES (1, 'torch', CURRENT_TIMESTAMP)"))
        c.execute(sa.text("INSERT INTO workloads (id, key, batch, prompt_len, gen_len, created_at) VALUES (1, 'b1-p16-g8', 1, 16, 8, CURRENT_TIMESTAMP)"))
        c.execute(sa.text("INSERT INTO profiles (id, content_sha256, device_id, engine_id, workload_id, device_facts, engine_facts, document, num_rows, "
                          "created_at) VALUES (1, 'x', 1, 1, 1, '{}', '{}', :doc, 0, CURRENT_TIMESTAMP)"), {"doc": json.dumps(doc)})
    engine.dispose()
    assert upgrade(db_url) == head_revision()
    engine = sa.create_engine(db_url)
    with engine.connect() as c:
        dims, cfg_sha, ckpt = c.execute(sa.text("SELECT model_dims, model_config_sha256, checkpoint_sha256 FROM profiles")).one()
    engine.dispose()
    assert dims == "llama L4 h64 heads4/kv2 d16 ffn128 vocab97" and cfg_sha is None and ckpt is None
