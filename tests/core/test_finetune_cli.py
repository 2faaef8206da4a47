"""``amoeba finetune`` end to end on a tiny model with a real tokenizer and corpus files (seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.checkpoint import open_checkpoint
from core.data.tokenizer import train_tokenizer
from tests.factories import run_cli, tiny_checkpoint

TEXT = "\n".join(f"The {a} fox number {i} jumps over the {b} dog and runs home again." for i, (a, b) in
                 enumerate([("quick", "lazy"), ("brown", "sleepy"), ("red", "old"), ("small", "big")] * 60)) + "\n"




@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for part in ("train", "validation", "calibration"):
        (corpus / f"{part}.txt").write_text(TEXT)
    tok_dir = train_tokenizer(corpus / "train.txt", tmp_path / "tok", vocab_size=300)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    base = tiny_checkpoint(tmp_path, name="base", vocab=len(tok))
    tok.save_pretrained(str(base))
    return base, corpus


def test_cli_finetunes_and_writes_a_checkpoint(setup: tuple[Path, Path], tmp_path: Path) -> None:
    base, corpus = setup
    args = ["finetune", "--base", str(base), "--strategy", str(base / "strategy"), "--out", str(tmp_path / "smol"),
            "--run-dir", str(tmp_path / "run"), "--corpus-dir", str(corpus), "--max-steps", "3", "--batch-size", "2",
            "--seq-len", "16", "--experts", "3", "--rank", "2", "--shapes-per-step", "3", "--eval-every", "3", "--checkpoint-every", "2"]
    r = run_cli(*args)
    assert r.exit_code == 0, r.output
    assert "saved" in r.output
    ck = open_checkpoint(tmp_path / "smol")
    assert ck.kind == "amoeba" and ck.tokenizer_dir == base and ck.meta["step"] == 3
    assert json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["step"] == 3
    bad = run_cli(*args[:-4] + ["--base-dtype", "int8"])
    assert bad.exit_code == 2 and "int8 is unavailable" in bad.output and "Traceback" not in bad.output
    bad = run_cli(*args[:-4] + ["--mixture", "moe"])
    assert bad.exit_code == 2 and "mixture must be" in bad.output
