"""SentencePiece BPE tokenizer (byte fallback) trained on the train split, saved for ``AutoTokenizer``."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from core.errors import DataMissingError


def train_tokenizer(train_text: Path, out_dir: Path, vocab_size: int = 8192, seed_sentences: int = 400_000) -> Path:
    """Train a SentencePiece BPE model with byte fallback and save it as a stock HF ``LlamaTokenizer``.

    Special ids: 0 ``<unk>``, 1 ``<s>``, 2 ``</s>``. Normalisation is identity so that the HF
    tokenizer and SentencePiece agree; newlines fall back to bytes. Returns ``out_dir``.
    """
    import sentencepiece as spm
    from transformers import AutoTokenizer

    if not train_text.is_file():
        raise DataMissingError(f"training text not found: {train_text}")
    if not 256 + 3 < vocab_size <= 65536:
        raise ValueError(f"vocab_size must be in (259, 65536], got {vocab_size}")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "tokenizer"
        spm.SentencePieceTrainer.train(
            input=str(train_text),
            model_prefix=str(prefix),
            vocab_size=vocab_size,
            model_type="bpe",
            byte_fallback=True,
            character_coverage=1.0,
            split_digits=True,
            normalization_rule_name="identity",
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            input_sentence_size=seed_sentences,
            shuffle_input_sentence=True,
            max_sentence_length=16384,
            num_threads=2,
            minloglevel=2,
        )
        src = Path(tmp) / "hf"
        src.mkdir()
        shutil.copy(prefix.with_suffix(".model"), src / "tokenizer.model")
        (src / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
        tok = AutoTokenizer.from_pretrained(str(src))
        out_dir.mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(str(out_dir))
    return out_dir
