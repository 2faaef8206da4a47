"""Fixtures for profiler tests: a tiny saved base model (profile tables: ``tests.factories.profile_table``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_tiny


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny GQA Llama: 4 layers, hidden 64, 4 heads over 2 KV groups, MLP 128."""
    d = tmp_path_factory.mktemp("prof") / "tiny-base"
    make_tiny("llama", layers=4, hidden=64, heads=4, kv=2, inter=128).save_pretrained(str(d))
    return d

