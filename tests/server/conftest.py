"""Server test fixtures: migrated SQLite (or PostgreSQL schema) databases, apps, hand-made profile tables."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ADMIN_TOKEN = "admin-secret-for-tests"


def make_table(*, shapes: list[tuple[int, float, float]] | None = None, layers: int = 4, workload: str = "b1-p16-g8",
               engine: str = "torch", base_ms: float = 1.0, per_layer_ms: float = 0.5) -> dict[str, Any]:
    """A valid profile table for the tiny test model (4 layers, 2 KV groups, MLP 128) with latencies that
    grow with depth and width. A test input for the upload route, not a measurement."""
    shapes = shapes or [(n, a, f) for n in range(2, layers + 1) for a in (1.0, 0.5) for f in (1.0, 0.5)]
    rows = []
    for n, a, f in shapes:
        from core.spec import SubnetSpec

        t = base_ms + n * per_layer_ms * (0.4 + 0.3 * a + 0.3 * f)
        stat = {"median": t, "p90": t * 1.05, "std": t * 0.02, "repetitions": 3}
        pre = {"median": 4 * t, "p90": 4.2 * t, "std": 0.1 * t, "repetitions": 3}
        rows.append({"shape": SubnetSpec(n, a, f).key, "num_layers": n, "kv_groups": max(1, round(2 * a)), "ffn_channels": int(128 * f),
                     "ttft_ms": pre, "tpot_ms": stat, "peak_mem_mb": 100.0 + 10 * n})
    return {
        "schema_version": 1,
        "device": {"name": "test", "cpu_model": "test-cpu", "cpu_count": 2, "threads": 1, "load_avg_start": [0.1, 0.1, 0.1],
                   "load_avg_end": [0.1, 0.1, 0.1], "os": "linux"},
        "engine": {"name": engine, "version": "2.13.0", "dtype": "fp32"},
        "workload": workload,
        "model": {"model_type": "llama", "num_layers": layers, "hidden_size": 64, "num_heads": 4, "num_kv_heads": 2, "head_dim": 16,
                  "intermediate_size": 128, "vocab_size": 97},
        "rows": rows,
    }


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


def make_checkpoint(root: Path, *, layers: int = 4, seed: int = 0) -> Path:
    """A tiny base model directory with a naive ``strategy/`` (widths 1 and 0.5, depth 2..layers)."""
    from core.model.loader import ModelInfo, weights_sha256
    from core.strategy.schema import naive_strategy
    from tests.conftest import make_tiny

    d = root / "tiny-base"
    m = make_tiny("llama", layers=layers, seed=seed)
    m.save_pretrained(str(d))
    naive_strategy(ModelInfo.from_config(m.config), weights_sha256(d), 2, (1.0, 0.5)).save(d / "strategy")
    return d


def tiny_metric_factory(ckpt: Any) -> Any:
    """Perplexity over a fixed random token stream (the tiny model has no tokenizer)."""
    import torch

    from core.search.metrics import PerplexityMetric

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, ckpt.elastic.info.vocab_size, (16 * 3,), generator=g)
    return PerplexityMetric(ids, 16, batch_size=4, max_windows=3)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt"))


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
