"""Project Gutenberg corpus: strip boilerplate, normalise, split deterministically by book."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.atomic import atomic_write_text
from core.errors import DataMissingError

_START_RES = [
    re.compile(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", re.IGNORECASE | re.MULTILINE),
    re.compile(r"^\*END\*?\s*THE SMALL PRINT!.*$", re.IGNORECASE | re.MULTILINE),
]
_END_RES = [
    re.compile(r"^\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG.*$", re.IGNORECASE | re.MULTILINE),
    re.compile(r"^\s*End of (the )?Project Gutenberg.*$", re.IGNORECASE | re.MULTILINE),
    re.compile(r"^\s*\*?Project Gutenberg Etext of .*$", re.IGNORECASE | re.MULTILINE),
]
_PRODUCED_BY = re.compile(r"^\s*(Produced|Transcribed|Prepared) (by|from) .*?(\n\s*\n)", re.IGNORECASE | re.DOTALL)


def strip_gutenberg(text: str) -> str:
    """Return the body of a Project Gutenberg book: header, licence and footer removed.

    Handles the modern ``*** START OF ... ***`` markers and the 1990s "SMALL PRINT" header.
    Line endings and the byte-order mark are normalised first.
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    start = 0
    for rx in _START_RES:
        m = rx.search(text)
        if m:
            start = max(start, m.end())
    end = len(text)
    for rx in _END_RES:
        for m in rx.finditer(text, start):
            end = min(end, m.start())
            break
    body = text[start:end].strip("\n")
    m = _PRODUCED_BY.match(body.lstrip("\n"))
    if m and m.end() < 2000:
        body = body.lstrip("\n")[m.end() :]
    return body.strip() + "\n"


def unwrap_paragraphs(text: str) -> str:
    """Join hard-wrapped lines into one line per paragraph; paragraphs separated by one newline."""
    paragraphs = re.split(r"\n\s*\n", text)
    out = []
    for p in paragraphs:
        line = re.sub(r"\s+", " ", p).strip()
        if line:
            out.append(line)
    return "\n".join(out) + "\n"


def clean_book(raw: str) -> str:
    """Full cleaning pipeline for one raw Gutenberg file."""
    return unwrap_paragraphs(strip_gutenberg(raw))


@dataclass(frozen=True)
class CorpusSplit:
    """Book file names per split; the split is by book, never by line."""

    train: list[str] = field(default_factory=list)
    calibration: list[str] = field(default_factory=list)
    validation: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def split_books(names: list[str], n_validation: int = 4, n_calibration: int = 2) -> CorpusSplit:
    """Deterministic split by book: order by sha256 of the file name, take validation then calibration."""
    if len(names) < n_validation + n_calibration + 1:
        raise ValueError(f"need at least {n_validation + n_calibration + 1} books, got {len(names)}")
    ordered = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    val = sorted(ordered[:n_validation])
    cal = sorted(ordered[n_validation : n_validation + n_calibration])
    train = sorted(ordered[n_validation + n_calibration :])
    return CorpusSplit(train=train, calibration=cal, validation=val)


def prepare_corpus(src: Path, out: Path) -> CorpusSplit:
    """Clean every ``*.txt`` book in ``src`` and write ``{train,calibration,validation}.txt`` + ``split.json``.

    Books in a split are separated by a blank line. Files are written atomically (tmp + rename).
    """
    if not src.is_dir():
        raise DataMissingError(f"corpus directory not found: {src}")
    names = sorted(p.name for p in src.glob("*.txt"))
    split = split_books(names)
    out.mkdir(parents=True, exist_ok=True)
    for part in ("train", "calibration", "validation"):
        books = getattr(split, part)
        text = "\n".join(clean_book((src / b).read_text(encoding="utf-8", errors="replace")) for b in books)
        atomic_write_text(out / f"{part}.txt", text)
    (out / "split.json").write_text(split.to_json(), encoding="utf-8")
    return split
