"""Server test fixtures: migrated SQLite (or PostgreSQL schema) databases, apps (tables and checkpoints: ``tests.factories``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories import ADMIN_TOKEN, make_table, tiny_checkpoint


@pytest.fixture
def table() -> dict[str, Any]:
    return make_table()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'amoeba.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database: a SQLite file, or a fresh schema in the PostgreSQL ``test`` database (dropped after)."""
    from server.db.migrate import upgrade

    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
        upgrade(url)
        yield url
        return
    yield from _pg_schema_url()


def _pg_schema_url() -> Iterator[str]:
    import sqlalchemy as sa

    from server.db.migrate import upgrade

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        with admin.begin() as c:
            c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as e:
        admin.dispose()
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {e.orig}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        yield url
    finally:
        with admin.begin() as c:
            c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def settings_for(tmp_path: Path, url: str, **kw: Any) -> Any:
    from server.settings import Settings

    base: dict[str, Any] = dict(var_dir=tmp_path / "var", database_url=url, admin_token=ADMIN_TOKEN, worker_threads=0,
                                checkpoint=tmp_path / "no-checkpoint", bootstrap_profile=False)
    base.update(kw)
    return Settings(**base)


@pytest.fixture
def client(tmp_path: Path, db_url: str, tiny_ckpt: Path) -> Iterator[Any]:
    """A TestClient on a migrated database serving the tiny checkpoint (its weights are never loaded unless a
    test searches), no workers (tests drain jobs explicitly)."""
    from fastapi.testclient import TestClient

    from server.app import create_app

    app = create_app(settings_for(tmp_path, db_url, checkpoint=tiny_ckpt))
    with TestClient(app) as c:
        yield c


@pytest.fixture
def bare_client(tmp_path: Path, db_url: str) -> Iterator[Any]:
    """A TestClient whose checkpoint is missing."""
    from fastapi.testclient import TestClient

    from server.app import create_app

    with TestClient(create_app(settings_for(tmp_path, db_url))) as c:
        yield c


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def register(client: Any, name: str = "dev1", **hardware: Any) -> str:
    r = client.post("/v1/devices", json={"name": name, "hardware": hardware}, headers=admin_headers())
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def dumps(d: dict[str, Any]) -> str:
    return json.dumps(d)


def tiny_metric_factory(ckpt: Any) -> Any:
    """Perplexity over a fixed random token stream (the tiny model has no tokenizer)."""
    import torch

    from core.search.metrics import PerplexityMetric

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, ckpt.elastic.info.vocab_size, (16 * 3,), generator=g)
    return PerplexityMetric(ids, 16, batch_size=4, max_windows=3)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture
def full_client(tmp_path: Path, db_url: str, tiny_ckpt: Path) -> Iterator[Any]:
    """A TestClient with the tiny checkpoint and the tiny metric; jobs run when the test drains them."""
    from fastapi.testclient import TestClient

    from server.app import create_app

    app = create_app(settings_for(tmp_path, db_url, checkpoint=tiny_ckpt), metric_factory=tiny_metric_factory)
    with TestClient(app) as c:
        yield c


CALIB_TEXT = (
    "the quick brown fox jumps over the lazy dog. a small model reads a short story about a cat and a dog. "
    "the cat sat on the mat and the dog ran in the park. every shape of the model keeps some layers and heads. "
) * 8


def add_tokenizer(model_dir: Path, vocab: int = 97) -> Path:
    """Train a tiny BPE tokenizer (ids: <unk>=0, <s>=1, </s>=2) on ``CALIB_TEXT`` and save it into ``model_dir``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([CALIB_TEXT], trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(str(model_dir))
    calib = model_dir.parent / "calibration.txt"
    calib.write_text(CALIB_TEXT)
    return calib
