"""Pretraining pieces: schedule, corpus cleaning/split, token windows, and exact resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data.corpus import clean_book, split_books, strip_gutenberg
from core.data.tokens import random_windows
from core.pretrain.config import ModelDims, PretrainConfig
from core.pretrain.recipe import pretrain
from core.pretrain.schedule import cosine_with_warmup

MODERN = (
    "\ufeffThe Project Gutenberg eBook of X\r\nlicence blah\r\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK X ***\r\n\r\n"
    "Produced by Someone\r\n\r\nCHAPTER I\r\nIt was a dark\r\nnight.\r\n\r\nThe end.\r\n"
    "*** END OF THE PROJECT GUTENBERG EBOOK X ***\r\nMore licence text\r\n"
)
OLD = (
    "*Project Gutenberg Etext of Y*\nheader\n"
    "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\nsmall print\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n"
    "\nBody line one\ncontinues.\n\nEnd of The Project Gutenberg Etext of Y\n"
)


def test_strip_modern_and_old_headers() -> None:
    assert clean_book(MODERN) == "CHAPTER I It was a dark night.\nThe end.\n"
    body = strip_gutenberg(OLD)
    assert "SMALL PRINT" not in body and "Etext" not in body and body.startswith("Body line one")
    assert clean_book(OLD) == "Body line one continues.\n"


def test_split_is_by_book_and_deterministic() -> None:
    names = [f"pg{i}_Book.txt" for i in range(20)]
    a, b = split_books(names), split_books(list(reversed(names)))
    assert a == b
    assert len(a.validation) == 4 and len(a.calibration) == 2
    assert set(a.train) | set(a.validation) | set(a.calibration) == set(names)
    assert not set(a.train) & set(a.validation) and not set(a.train) & set(a.calibration)
    with pytest.raises(ValueError):
        split_books(names[:5])


def test_schedule_warmup_then_cosine() -> None:
    kw = dict(max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    vals = [cosine_with_warmup(s, **kw) for s in range(120)]
    assert vals[0] == pytest.approx(0.1) and vals[9] == pytest.approx(1.0)
    assert all(vals[i] >= vals[i + 1] for i in range(10, 99))
    assert vals[99] == pytest.approx(0.1, abs=1e-3) and vals[119] == 0.1


def test_windows_are_pure_function_of_step() -> None:
    toks = np.arange(1000, dtype=np.uint16)
    a = random_windows(toks, 3, 16, step=5, seed=1)
    assert torch.equal(a, random_windows(toks, 3, 16, step=5, seed=1))
    assert not torch.equal(a, random_windows(toks, 3, 16, step=6, seed=1))
    assert torch.equal(a[:, 1:] - a[:, :-1], torch.ones(3, 15, dtype=torch.long))


def _tiny_cfg(**kw: object) -> PretrainConfig:
    dims = ModelDims(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64, max_position_embeddings=32)
    base = PretrainConfig(dims=dims, seq_len=16, batch_size=2, max_steps=6, warmup_steps=2, checkpoint_every=2, eval_every=3, eval_batches=1, threads=1)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_resume_after_interruption_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train, val = rng.integers(0, 50, 4000).astype(np.uint16), rng.integers(0, 50, 500).astype(np.uint16)
    full, res_full = pretrain(_tiny_cfg(), train, val, tmp_path / "a")
    # interrupted: a zero time budget stops (with a checkpoint) after the first step
    _, res_cut = pretrain(_tiny_cfg(max_minutes=0.0), train, val, tmp_path / "b")
    assert not res_cut.finished and res_cut.steps == 1
    resumed, res_b = pretrain(_tiny_cfg(), train, val, tmp_path / "b")
    assert res_b.finished and res_b.tokens_seen == res_full.tokens_seen
    for (n, p), (_, q) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=n)


def test_resume_refuses_other_model_config(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 50, 4000).astype(np.uint16)
    pretrain(_tiny_cfg(max_steps=2), train, train, tmp_path / "r")
    other = _tiny_cfg(dims=dataclasses.replace(_tiny_cfg().dims, hidden_size=64))
    with pytest.raises(ValueError, match="different model"):
        pretrain(other, train, train, tmp_path / "r")


def test_a_failed_checkpoint_write_keeps_the_previous_one_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run checkpoint is written through ``core.atomic``: a write that fails midway changes nothing in the run dir."""
    import core.pretrain.recipe as recipe

    rng = np.random.default_rng(0)
    train = rng.integers(0, 50, 4000).astype(np.uint16)
    run = tmp_path / "r"
    pretrain(_tiny_cfg(max_minutes=0.0), train, train, run)  # one step, one checkpoint
    before = sorted(p.name for p in run.iterdir())
    state = (run / "checkpoint" / "state.json").read_text()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(recipe.torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        pretrain(_tiny_cfg(max_minutes=0.0), train, train, run)
    assert sorted(p.name for p in run.iterdir()) == before
    assert (run / "checkpoint" / "state.json").read_text() == state
