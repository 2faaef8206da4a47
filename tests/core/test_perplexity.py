"""Perplexity: window protocol, known answers with controlled logits, agreement with the HF loss, WikiText-2 join."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from core.data.paths import FIXTURES_DIR, data_dir
from core.errors import ConfigError, DataMissingError
from core.eval.perplexity import context_window, perplexity_from_ids, perplexity_of_file, perplexity_of_text, tokenize_stream
from core.eval.wikitext import wikitext2_test_rows, wikitext2_test_text
from tests.conftest import make_tiny

WIKI_FIXTURE = FIXTURES_DIR / "eval" / "data" / "wikitext2"
V = 11


def uniform(ids: torch.Tensor) -> torch.Tensor:
    return torch.zeros(*ids.shape, V)


def successor(ids: torch.Tensor) -> torch.Tensor:
    """Puts (almost) all mass on ``(id + 1) % V``."""
    out = torch.full((*ids.shape, V), -30.0)
    out.scatter_(2, ((ids + 1) % V).unsqueeze(-1), 30.0)
    return out


def test_uniform_logits_give_vocab_size() -> None:
    ids = torch.arange(53) % V
    r = perplexity_from_ids(uniform, ids, window=10, batch_size=2)
    assert r.windows == 5 and r.window_len == 10
    assert r.tokens_scored == 5 * 9  # first token of each window unscored, tail of 3 dropped
    assert r.nll == pytest.approx(math.log(V))
    assert r.ppl == pytest.approx(V)


def test_perfect_predictor_and_a_wrong_one() -> None:
    ids = torch.arange(40) % V
    assert perplexity_from_ids(successor, ids, window=8).ppl == pytest.approx(1.0, abs=1e-6)
    shuffled = torch.tensor([(7 * i) % V for i in range(40)])
    assert perplexity_from_ids(successor, shuffled, window=8).nll == pytest.approx(60.0, rel=1e-3)


def test_matches_hf_loss_and_is_batch_invariant() -> None:
    model = make_tiny(vocab=97)
    ids = torch.randint(0, 97, (70,), generator=torch.Generator().manual_seed(1))
    fn = lambda x: model(input_ids=x).logits  # noqa: E731
    r1 = perplexity_from_ids(fn, ids, window=16, batch_size=3)
    r2 = perplexity_from_ids(fn, ids, window=16, batch_size=1)
    with torch.no_grad():
        losses = [model(input_ids=w[None], labels=w[None]).loss.item() for w in ids[:64].reshape(4, 16)]
    assert r1.nll == pytest.approx(sum(losses) / 4, rel=1e-5)
    assert r1.nll == pytest.approx(r2.nll, rel=1e-6)
    assert r1.tokens_scored == 4 * 15
    assert r1.window_nll == pytest.approx(losses, rel=1e-5) and r2.window_nll == pytest.approx(losses, rel=1e-5)  # per window, in order
    mu = sum(losses) / 4
    assert r1.nll_stderr == pytest.approx(math.sqrt(sum((x - mu) ** 2 for x in losses) / 3 / 4), rel=1e-4)
    assert perplexity_from_ids(fn, ids, window=16, max_windows=1).nll_stderr is None


def test_max_windows_and_progress() -> None:
    calls: list[tuple[int, int]] = []
    r = perplexity_from_ids(uniform, torch.arange(100) % V, window=10, batch_size=4, max_windows=6, on_progress=lambda d, t: calls.append((d, t)))
    assert r.windows == 6 and calls == [(4, 6), (6, 6)]


@pytest.mark.parametrize("ids,window,kw", [(torch.zeros(2, 5, dtype=torch.long), 4, {}), (torch.arange(5), 1, {}), (torch.arange(5), 6, {}),
                                           (torch.arange(20), 4, {"batch_size": 0}), (torch.arange(20), 4, {"max_windows": 0})])
def test_bad_input_is_refused(ids: torch.Tensor, window: int, kw: dict) -> None:
    with pytest.raises(ConfigError):
        perplexity_from_ids(uniform, ids, window, **kw)


def test_bad_logits_shape_is_named() -> None:
    with pytest.raises(ConfigError, match="expected"):
        perplexity_from_ids(lambda ids: torch.zeros(ids.shape[0], V), torch.arange(20), 5)


def test_context_window_caps_by_model_context() -> None:
    assert context_window(None, 512) == 512
    assert context_window(2048, 512) == 512
    assert context_window(128, 512) == 128
    with pytest.raises(ConfigError):
        context_window(1, 512)


class CharTok:
    """Characters → ids 2.., optional BOS 1 by default (a transparent tokenizer for exact expectations)."""

    bos_token_id = 1

    def __init__(self, add_bos: bool) -> None:
        self.add_bos = add_bos

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids = [2 + (ord(c) % (V - 2)) for c in text]
        return {"input_ids": ([1] if add_special_tokens and self.add_bos else []) + ids}


def test_tokenize_stream_follows_the_tokenizer_bos_default() -> None:
    assert tokenize_stream(CharTok(True), "ab").tolist()[0] == 1
    assert tokenize_stream(CharTok(False), "ab").tolist() == CharTok(False)("ab")["input_ids"]
    assert tokenize_stream(CharTok(False), "ab", add_bos=True).tolist()[0] == 1
    assert tokenize_stream(CharTok(True), "ab", add_bos=False).tolist() == [2 + ord("a") % 9, 2 + ord("b") % 9]


def test_file_equals_text_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_bytes(b"hello world\r\nsecond line\r\n" * 5)
    tok = CharTok(True)
    a = perplexity_of_file(successor, tok, p, 8)
    b = perplexity_of_text(successor, tok, "hello world\nsecond line\n" * 5, 8)
    assert a == b
    with pytest.raises(DataMissingError):
        perplexity_of_file(successor, tok, tmp_path / "nope.txt", 8)


def test_wikitext_rows_rebuild_the_dataset_layout() -> None:
    raw = [line for line in (WIKI_FIXTURE / "wiki.test.raw").read_bytes().decode().split("\r\n") if line]
    rows = wikitext2_test_rows(WIKI_FIXTURE)
    assert rows == ["", raw[0] + "\n", "", raw[1] + "\n", raw[2] + "\n", "", raw[3] + "\n", "", ""]
    text = wikitext2_test_text(WIKI_FIXTURE)
    assert text.startswith("\n\n = Robert Boulter = \n\n\n\n\n Robert Boulter is")
    assert "\r" not in text


def test_wikitext_mismatched_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "test.txt").write_text((WIKI_FIXTURE / "test.txt").read_text())
    (tmp_path / "wiki.test.raw").write_bytes(b" only one line \r\n")
    with pytest.raises(ConfigError, match="not the same"):
        wikitext2_test_rows(tmp_path)
    with pytest.raises(DataMissingError):
        wikitext2_test_rows(tmp_path / "missing")


@pytest.mark.data
def test_real_wikitext2_has_the_hf_row_count() -> None:
    rows = wikitext2_test_rows(data_dir() / "wikitext2")
    assert len(rows) == 4358 and sum(1 for r in rows if not r) == 1467
    assert all(r.endswith("\n") for r in rows if r)
