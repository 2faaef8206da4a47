"""Fine-tuning data: token stream of the corpus train split (optionally + calibration), and held-out validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.data.tokens import tokenize_file
from core.errors import DataMissingError


def corpus_tokens(corpus_dir: Path, tokenizer: Any, parts: tuple[str, ...]) -> np.ndarray:
    """Concatenated token ids of ``{part}.txt`` for each part (tokenised once, cached next to the text)."""
    arrays = []
    for part in parts:
        f = Path(corpus_dir) / f"{part}.txt"
        if not f.is_file():
            raise DataMissingError(f"corpus split {part!r} not found: {f} (prepare the corpus first)")
        arrays.append(tokenize_file(f, tokenizer))
    return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]


def finetune_splits(corpus_dir: Path, tokenizer: Any, with_calibration: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` token arrays. Calibration text is excluded unless asked for: Stage 1 and the
    search score shapes on it, so training on it would leak into the accuracy the search maximises."""
    train_parts = ("train", "calibration") if with_calibration else ("train",)
    return corpus_tokens(corpus_dir, tokenizer, train_parts), corpus_tokens(corpus_dir, tokenizer, ("validation",))
