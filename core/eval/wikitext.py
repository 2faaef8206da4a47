"""The WikiText-2 raw test split as one text, joined exactly as ``"\\n\\n".join(dataset["text"])``.

The Hugging Face ``wikitext-2-raw-v1`` test split has 4358 rows: every line of ``wiki.test.raw`` with its
trailing ``"\\n"``, and ``""`` for each blank line. GPTQ, FLAP and AmoebaLLM score ``"\\n\\n".join(rows)``.
Our copy of ``wiki.test.raw`` lost its blank lines (2891 non-empty lines, CRLF endings), so the row layout is
taken from the tokenised ``test.txt`` (= ``wiki.test.tokens``), which has the same 4358 lines with the blank
ones in the same places; the non-empty rows are filled from the raw file in order. The count of non-empty
lines must match, otherwise the files are not the same split and nothing is guessed.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import ConfigError, DataMissingError

RAW_FILE = "wiki.test.raw"
LAYOUT_FILE = "test.txt"


def wikitext2_test_rows(wikitext_dir: Path) -> list[str]:
    """The dataset rows: raw lines with ``"\\n"`` at the end, ``""`` for blank lines (4358 for the real split)."""
    raw_path, layout_path = Path(wikitext_dir) / RAW_FILE, Path(wikitext_dir) / LAYOUT_FILE
    for p in (raw_path, layout_path):
        if not p.is_file():
            raise DataMissingError(f"WikiText-2 file not found: {p}")
    raw = [line for line in raw_path.read_bytes().decode("utf-8").replace("\r\n", "\n").split("\n") if line.strip()]
    layout = layout_path.read_text(encoding="utf-8").split("\n")
    if layout and layout[-1] == "":
        layout.pop()  # the file's final newline
    filled = sum(1 for line in layout if line.strip())
    if filled != len(raw):
        raise ConfigError(f"{layout_path} has {filled} non-blank lines but {raw_path} has {len(raw)}: not the same WikiText-2 split")
    it = iter(raw)
    return [next(it) + "\n" if line.strip() else "" for line in layout]


def wikitext2_test_text(wikitext_dir: Path) -> str:
    """``"\\n\\n".join(rows)`` of the WikiText-2 raw test split (see module docstring)."""
    return "\n\n".join(wikitext2_test_rows(wikitext_dir))
