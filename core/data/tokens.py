"""Token streams: a text file tokenised once into a cached uint16/uint32 array, and window batches."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.atomic import atomic_open
from core.errors import DataMissingError


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenize_file(text_file: Path, tokenizer: Any, cache_dir: Path | None = None, lines_per_chunk: int = 2000) -> np.ndarray:
    """Tokenise ``text_file`` exactly as evaluation does (whole text, chunked by lines); cache as ``.npy``.

    Returns a 1-D integer array. The cache key covers the text's sha256 and the vocabulary.
    """
    if not text_file.is_file():
        raise DataMissingError(f"text file not found: {text_file}")
    key = hashlib.sha256((_file_sha(text_file) + str(sorted(tokenizer.get_vocab().items())[:64]) + str(len(tokenizer))).encode()).hexdigest()[:16]
    cache = (cache_dir or text_file.parent) / f".{text_file.name}.{key}.npy"
    if cache.is_file():
        return np.load(cache)
    lines = text_file.read_text(encoding="utf-8").splitlines(keepends=True)
    chunks = ["".join(lines[i : i + lines_per_chunk]) for i in range(0, len(lines), lines_per_chunk)]
    ids: list[int] = []
    for chunk in chunks:
        ids.extend(tokenizer(chunk, add_special_tokens=False)["input_ids"])
    dtype = np.uint16 if len(tokenizer) < 65536 else np.uint32
    arr = np.asarray(ids, dtype=dtype)
    with atomic_open(cache) as fh:
        np.save(fh, arr)
    return arr


def random_windows(tokens: np.ndarray, batch_size: int, seq_len: int, step: int, seed: int) -> torch.Tensor:
    """A batch of ``[batch_size, seq_len]`` windows at random offsets, a pure function of (seed, step).

    Being a pure function of the step makes resume exact: no sampler state to save.
    """
    if len(tokens) <= seq_len:
        raise ValueError(f"token stream of length {len(tokens)} is shorter than seq_len {seq_len}")
    g = np.random.default_rng([seed, step])
    starts = g.integers(0, len(tokens) - seq_len, size=batch_size)
    batch = np.stack([tokens[s : s + seq_len] for s in starts]).astype(np.int64)
    return torch.from_numpy(batch)
