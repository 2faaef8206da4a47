"""``amoeba export``: happy path prints path/sha256/seconds; bad input is one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import Result

from core.export.manifest import artifact_id, verify_export
from core.model.loader import ModelInfo, weights_sha256
from core.strategy.schema import naive_strategy
from tests.conftest import make_tiny
from tests.factories import run_cli, tiny_checkpoint


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny base model and, beside it (not inside: --model needs --strategy), its naive strategy."""
    mdir = tiny_checkpoint(tmp_path, name="model")
    (mdir / "tokenizer_config.json").write_text("{}")
    return mdir, (mdir / "strategy").rename(tmp_path / "strategy")


def _run(*args: str | Path) -> Result:
    return run_cli("export", *args)


def test_export_cli_writes_verified_artifact(setup: tuple[Path, Path], tmp_path: Path) -> None:
    mdir, sdir = setup
    out = tmp_path / "out"
    r = _run("--model", mdir, "--strategy", sdir, "--shape", "L3-a0.5-f0.5", "--out", out)
    assert r.exit_code == 0, r.output
    assert f"path: {out}" in r.output and f"sha256: {artifact_id(out)}" in r.output and "seconds: " in r.output
    assert verify_export(out) and (out / "tokenizer_config.json").is_file()
    card = json.loads((out / "amoeba_subnet.json").read_text())
    assert card["source"]["base_sha256"] == weights_sha256(mdir) and card["shape"] == "L3-a0.5-f0.5"
    r = _run("--model", mdir, "--strategy", sdir, "--shape", "L4-a1-f1", "--out", out)
    assert r.exit_code == 2 and "not empty" in r.output
    r = _run("--model", mdir, "--strategy", sdir, "--shape", "L4-a1-f1", "--out", out, "--overwrite", "--dtype", "bfloat16")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 4


def test_export_cli_errors_are_one_line(setup: tuple[Path, Path], tmp_path: Path) -> None:
    mdir, sdir = setup
    other = make_tiny("llama", inter=64)
    odir = tmp_path / "other"
    other.save_pretrained(str(odir))
    foreign = naive_strategy(ModelInfo.from_config(other.config), weights_sha256(odir), min_layers=2, widths=(1.0, 0.5)).save(tmp_path / "foreign")
    stale_dir = naive_strategy(ModelInfo.from_config(make_tiny("llama").config), "0" * 64, min_layers=2, widths=(1.0, 0.5)).save(tmp_path / "stale")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "strategy.json").write_text("{not json")
    out = tmp_path / "out"
    cases = {
        "another model": ("--model", mdir, "--strategy", foreign, "--shape", "L3-a1-f1"),
        "other weights": ("--model", mdir, "--strategy", stale_dir, "--shape", "L3-a1-f1"),
        "corrupt": ("--model", mdir, "--strategy", corrupt, "--shape", "L3-a1-f1"),
        "not in the width ladder": ("--model", mdir, "--strategy", sdir, "--shape", "L3-a0.75-f1"),
        "outside": ("--model", mdir, "--strategy", sdir, "--shape", "L1-a1-f1"),
        "bad shape key": ("--model", mdir, "--strategy", sdir, "--shape", "big"),
        "model directory not found": ("--model", tmp_path / "nope", "--strategy", sdir, "--shape", "L3-a1-f1"),
        "no strategy.json": ("--model", mdir, "--strategy", tmp_path / "nope", "--shape", "L3-a1-f1"),
        "--dtype must be": ("--model", mdir, "--strategy", sdir, "--shape", "L3-a1-f1", "--dtype", "int3"),
        "or --model and --strategy": ("--model", mdir, "--shape", "L3-a1-f1"),
    }
    for needle, args in cases.items():
        r = _run(*args, "--out", out)
        assert r.exit_code == 2, (needle, r.output)
        # rich wraps long lines at the console width (80 under the test runner): compare the unwrapped message
        message = " ".join(r.output.split("error:", 1)[-1].split())
        assert r.output.count("error:") == 1 and needle in message and "Traceback" not in r.output, (needle, r.output)
    assert not out.exists()


def test_export_cli_from_checkpoint(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """``--checkpoint`` (a base dir with ``strategy/``) exports the same tensors as --model/--strategy."""
    import shutil

    from safetensors.torch import load_file

    mdir, sdir = setup
    shutil.copytree(sdir, mdir / "strategy")
    r = _run("--checkpoint", mdir, "--shape", "L3-a0.5-f0.5", "--out", tmp_path / "a")
    assert r.exit_code == 0, r.output
    r = _run("--model", mdir, "--strategy", sdir, "--shape", "L3-a0.5-f0.5", "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "a" / "amoeba_subnet.json").read_text())["source"]["kind"] == "base+strategy"
    r = _run("--checkpoint", mdir, "--model", mdir, "--shape", "L3-a0.5-f0.5", "--out", tmp_path / "c")
    assert r.exit_code == 2 and "either --checkpoint or --model" in r.output
