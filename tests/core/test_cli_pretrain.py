"""``amoeba prepare-corpus`` and ``amoeba pretrain`` error handling (the recipe itself is tested in test_pretrain)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.factories import run_cli

BOOK = "*** START OF THE PROJECT GUTENBERG EBOOK {n} ***\n\nChapter one of book {n}.\nIt goes on.\n\nThe end.\n*** END OF THE PROJECT GUTENBERG EBOOK {n} ***\n"




def test_prepare_corpus_splits_by_book(tmp_path: Path) -> None:
    src = tmp_path / "data" / "corpus" / "gutenberg"
    src.mkdir(parents=True)
    for i in range(10):
        (src / f"pg{i}_B.txt").write_text(BOOK.format(n=i))
    r = run_cli("prepare-corpus", "--out", str(tmp_path / "c"), "--data-dir", str(tmp_path / "data"))
    assert r.exit_code == 0, r.output
    split = json.loads((tmp_path / "c" / "split.json").read_text())
    assert len(split["validation"]) == 4 and len(split["calibration"]) == 2 and len(split["train"]) == 4
    val = (tmp_path / "c" / "validation.txt").read_text()
    assert "PROJECT GUTENBERG" not in val and val.count("Chapter one of book") == 4


def test_missing_corpus_is_one_line_error(tmp_path: Path) -> None:
    r = run_cli("prepare-corpus", "--out", str(tmp_path / "c"), "--data-dir", str(tmp_path / "nope"))
    assert r.exit_code == 2 and "corpus directory not found" in r.output and "Traceback" not in r.output
    r = run_cli("pretrain", "--out", str(tmp_path / "m"), "--run-dir", str(tmp_path / "r"), "--save-dtype", "int8")
    assert r.exit_code == 2 and "--save-dtype must be float32 or bfloat16" in r.output
