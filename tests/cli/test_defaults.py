"""Model-taking verbs default to the served checkpoint (``AMOEBA_CHECKPOINT``, else the bundled one)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli.defaults import served_checkpoint
from core.strategy.schema import Strategy
from tests.factories import flat, run_cli, tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("served"), tokenizer=True)


def test_served_checkpoint_follows_the_service_settings(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.settings import default_checkpoint

    monkeypatch.delenv("AMOEBA_CHECKPOINT", raising=False)
    assert served_checkpoint() == default_checkpoint().resolve()
    monkeypatch.setenv("AMOEBA_CHECKPOINT", str(ckpt))
    assert served_checkpoint() == ckpt.resolve()


def test_profile_without_model_uses_the_served_checkpoint_space(ckpt: Path) -> None:
    r = run_cli("profile", "--engine", "torch", "--workload", "b1-p8-g2", "--dry-run", env={"AMOEBA_CHECKPOINT": str(ckpt)})
    assert r.exit_code == 0, r.output
    text = flat(r.output)
    space = Strategy.load(ckpt / "strategy").space
    keys = {s.key for s in space}
    assert "profiling the served checkpoint" in text and f"{len(keys)} shapes on torch" in text
    assert set(re.findall(r"L\d+-a[\d.]+-f[\d.]+", text)) == keys  # the checkpoint's space, nothing outside it


def test_accuracy_without_checkpoint_uses_the_served_one(ckpt: Path, tmp_path: Path) -> None:
    r = run_cli("accuracy", "--shapes", "L4-a1-f1", "--window", "32", "--max-windows", "2", "--cache", tmp_path / "c.json",
                "--json-out", tmp_path / "a.json", env={"AMOEBA_CHECKPOINT": str(ckpt)})
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "a.json").read_text())["checkpoint"] == str(ckpt.resolve())


def test_export_and_eval_without_a_model_use_the_served_checkpoint(ckpt: Path, tmp_path: Path) -> None:
    env = {"AMOEBA_CHECKPOINT": str(ckpt)}
    r = run_cli("export", "--shape", "L2-a0.5-f0.5", "--out", tmp_path / "sub", env=env)
    assert r.exit_code == 0, r.output
    assert "loading the served checkpoint" in flat(r.output) and (tmp_path / "sub" / "config.json").is_file()
    text = tmp_path / "t.txt"
    text.write_text((ckpt / "calibration.txt").read_text()[:4000])
    r = run_cli("eval", "--ppl", text, "--window", "32", "--max-windows", "2", "--json-out", tmp_path / "e.json", env=env)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "e.json").read_text())["perplexity"]["t.txt"]["ppl"] > 1
