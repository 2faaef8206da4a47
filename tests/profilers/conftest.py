"""Fixtures for profiler tests: a tiny saved base model and a valid profile table factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_tiny


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny GQA Llama: 4 layers, hidden 64, 4 heads over 2 KV groups, MLP 128."""
    d = tmp_path_factory.mktemp("prof") / "tiny-base"
    make_tiny("llama", layers=4, hidden=64, heads=4, kv=2, inter=128).save_pretrained(str(d))
    return d


def table_dict(rows: list[dict[str, Any]] | None = None, **over: Any) -> dict[str, Any]:
    """A valid profile table as a plain dict (edit it to make invalid ones)."""
    stat = {"median": 2.0, "p90": 2.5, "std": 0.1, "repetitions": 3}
    rows = rows if rows is not None else [
        {"shape": "L4-a1-f1", "num_layers": 4, "kv_groups": 2, "ffn_channels": 128, "ttft_ms": stat, "tpot_ms": stat, "peak_mem_mb": 10.0},
        {"shape": "L2-a0.5-f0.75", "num_layers": 2, "kv_groups": 1, "ffn_channels": 96, "ttft_ms": stat, "tpot_ms": stat},
    ]
    d = {
        "schema_version": 1,
        "device": {"name": "dev1", "cpu_model": "x", "cpu_count": 2, "threads": 1, "load_avg_start": [0.1, 0.2, 0.3], "load_avg_end": [0.1, 0.2, 0.3]},
        "engine": {"name": "torch", "version": "2.13", "dtype": "fp32"},
        "workload": "b1-p16-g8",
        "model": {"model_type": "llama", "num_layers": 4, "hidden_size": 64, "num_heads": 4, "num_kv_heads": 2, "head_dim": 16,
                  "intermediate_size": 128, "vocab_size": 97},
        "rows": rows,
    }
    d.update(over)
    return d
