"""``amoeba accuracy``: fills the cache for the whole space, reuses it, writes JSON, one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from core.search.cache import JsonAccuracyCache
from tests.factories import run_cli, tiny_checkpoint


def _run(*args: str | Path) -> tuple[int, str]:
    res = run_cli("accuracy", *args)
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("acc-cli"), name="tiny-ckpt", tokenizer=True, layers=3, min_layers=2)


def test_fills_the_whole_space_then_reads_the_cache(ckpt_dir: Path, tmp_path: Path) -> None:
    cache, out = tmp_path / "acc.json", tmp_path / "table.json"
    code, output = _run("--checkpoint", ckpt_dir, "--cache", cache, "--window", "32", "--max-windows", "2", "--json-out", out)
    assert code == 0, output
    assert "8 evaluated, 0 from cache" in output  # depths 2..3 x widths {1, 0.5}^2
    doc = json.loads(out.read_text())
    assert doc["metric"] == "ppl" and doc["higher_is_better"] is True and len(doc["shapes"]) == 8
    for row in doc["shapes"]:
        assert row["accuracy"] == pytest.approx(-math.log(row["raw"]))
    assert len(JsonAccuracyCache(cache)) == 8
    code, output = _run("--checkpoint", ckpt_dir, "--cache", cache, "--window", "32", "--max-windows", "2", "--shapes", "L3-a0.5-f1,L2-a1-f1")
    assert code == 0 and "0 evaluated, 2 from cache" in output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shapes", "L9-a1-f1"], "num_layers 9 outside [2, 3]"),
        (["--shapes", "L3-a0.75-f1"], "not in the width ladder"),
        (["--metric", "bleu"], "unknown accuracy metric 'bleu'"),
        (["--calib-text", "/nonexistent.txt"], "calibration text not found"),
        (["--threads", "0"], "--threads must be >= 1"),
    ],
)
def test_bad_input_is_one_line(ckpt_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    code, output = _run("--checkpoint", ckpt_dir, "--cache", tmp_path / "acc.json", "--window", "32", "--max-windows", "1", *args)
    assert code == 2 and message in output and "Traceback" not in output
    assert not (tmp_path / "acc.json").exists()


def test_missing_checkpoint(tmp_path: Path) -> None:
    code, output = _run("--checkpoint", tmp_path / "nope", "--cache", tmp_path / "acc.json")
    assert code == 2 and "checkpoint not found" in output
