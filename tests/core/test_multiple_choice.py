"""Multiple-choice scoring: hand-computed log-likelihoods, acc vs acc_norm, token boundary, truncation, batching."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoTokenizer

from core.data.paths import FIXTURES_DIR
from core.errors import ConfigError
from core.eval.encoding import bos_prefix, encode, encode_pair
from core.eval.multiple_choice import ItemScore, MultipleChoiceItem, build_requests, evaluate_items, score_items, summarize
from tests.conftest import make_tiny

ALPHABET = " abcdefghijklmnopqrstuvwxyz:?"
V = len(ALPHABET) + 2  # 0 pad/unused, 1 BOS


class CharTok:
    """One token per character of ``ALPHABET`` (id = 2 + position); BOS 1 only when asked."""

    bos_token_id = 1

    def __init__(self, add_bos: bool = False) -> None:
        self.add_bos = add_bos

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids = [2 + ALPHABET.index(c) for c in text]
        return {"input_ids": ([1] if add_special_tokens and self.add_bos else []) + ids}


def tid(c: str) -> int:
    return 2 + ALPHABET.index(c)


def unigram(probs: dict[str, float]):  # noqa: ANN201
    """Every position predicts the same distribution: ``probs`` on some characters, the rest share what is left."""
    rest = (1 - sum(probs.values())) / (V - len(probs))
    p = torch.full((V,), rest)
    for c, q in probs.items():
        p[tid(c)] = q
    logp = p.log()
    return lambda ids: logp.expand(*ids.shape, V).clone()


def successor(ids: torch.Tensor) -> torch.Tensor:
    """Predicts the next letter of the alphabet after the current token (an exact test of position alignment)."""
    out = torch.full((*ids.shape, V), -20.0)
    out.scatter_(2, ((ids + 1) % V).unsqueeze(-1), 20.0)
    return out


def test_acc_and_acc_norm_on_a_hand_computed_case() -> None:
    fn = unigram({" ": 0.5, "a": 0.25, "b": 0.125})
    item = MultipleChoiceItem.with_choices("q:", ["b", "aaaa"], gold=1)
    (s,) = score_items(fn, CharTok(), [item], max_len=64)
    lp_b = math.log(0.5) + math.log(0.125)  # " b"
    lp_aaaa = math.log(0.5) + 4 * math.log(0.25)  # " aaaa"
    assert s.loglikelihoods == pytest.approx((lp_b, lp_aaaa), rel=1e-6)
    assert s.pred == 0  # summed log-prob prefers the short choice ...
    assert s.pred_norm == 1  # ... per byte of choice text (1 vs 4 bytes) the long one wins
    r = summarize("t", [s], [item])
    assert (r.acc, r.acc_norm, r.chance, r.n) == (0.0, 1.0, 0.5, 1)


def test_continuation_is_scored_at_the_right_positions() -> None:
    items = [MultipleChoiceItem.with_choices("ab", ["c", "x"], 0, delimiter=""), MultipleChoiceItem.with_choices("abc", ["e", "d"], 1, delimiter="")]
    scores = score_items(successor, CharTok(), items, max_len=64)
    assert [s.pred for s in scores] == [0, 1]
    assert scores[0].loglikelihoods[0] == pytest.approx(0.0, abs=1e-6)
    assert scores[0].loglikelihoods[1] == pytest.approx(-40.0, rel=1e-4)


def test_partial_scoring_scores_the_shared_continuation() -> None:
    item = MultipleChoiceItem.with_contexts(["the x", "the c"], "de", gold=1, delimiter="")
    assert item.continuations == ("de", "de") and item.norm_bytes == (2, 2)
    (s,) = score_items(successor, CharTok(), [item], max_len=64)
    assert s.pred == s.pred_norm == 1
    assert s.loglikelihoods[1] == pytest.approx(0.0, abs=1e-6)


def test_left_truncation_keeps_the_continuation() -> None:
    item = MultipleChoiceItem.with_choices("zzzzzzzzzzab", ["cd", "xy"], 0, delimiter="")
    (req0, _) = build_requests(CharTok(), [item], max_len=4)
    assert len(req0.tokens) == 4 and req0.targets == (tid("c"), tid("d"))
    assert list(req0.tokens) == [tid("z"), tid("a"), tid("b"), tid("c")]  # last 5 of "…abcd", minus the final token
    full = score_items(successor, CharTok(), [item], max_len=64)[0]
    short = score_items(successor, CharTok(), [item], max_len=4)[0]
    assert short.loglikelihoods == pytest.approx(full.loglikelihoods, abs=1e-5)
    with pytest.raises(ConfigError, match="exceeds the model context"):
        build_requests(CharTok(), [item], max_len=1)


def test_bos_prefix_rule() -> None:
    assert bos_prefix(CharTok(add_bos=True)) == [1] and bos_prefix(CharTok()) == []
    item = MultipleChoiceItem.with_choices("ab", ["c", "d"], 0, delimiter="")
    assert build_requests(CharTok(add_bos=True), [item], 64)[0].tokens[0] == 1
    assert build_requests(CharTok(), [item], 64, add_bos=True)[0].tokens[0] == 1
    assert build_requests(CharTok(add_bos=True), [item], 64, add_bos=False)[0].tokens[0] == tid("a")


def spm_tokenizer():  # noqa: ANN201
    return AutoTokenizer.from_pretrained(str(FIXTURES_DIR / "eval" / "tokenizer"))


def test_trailing_context_space_moves_to_the_continuation() -> None:
    tok = spm_tokenizer()
    assert encode_pair(tok, "Answer: ", "A") == encode_pair(tok, "Answer:", " A")
    ctx, cont = encode_pair(tok, "Question: how?\nAnswer:", " yes")
    assert ctx == encode(tok, "Question: how?\nAnswer:")
    assert ctx + cont == encode(tok, "Question: how?\nAnswer: yes")
    assert tok.convert_ids_to_tokens(cont)[0].startswith("▁")  # the space belongs to the continuation


def test_padding_never_leaks_and_matches_a_manual_forward() -> None:
    tok = spm_tokenizer()
    model = make_tiny(vocab=len(tok))
    fn = lambda ids: model(input_ids=ids).logits  # noqa: E731
    items = [
        MultipleChoiceItem.with_choices("Question: how do I dry a shirt?\nAnswer:", ["hang it up", "put it in the oven please"], 0),
        MultipleChoiceItem.with_choices("The cat", ["sat", "ran far away from home", "slept"], 2),
        MultipleChoiceItem.with_contexts(["Sarah helped Maria so Sarah", "Sarah helped Maria so Maria"], "was thanked.", 1),
    ]
    one = score_items(fn, tok, items, 128, batch_size=1)
    many = score_items(fn, tok, items, 128, batch_size=5)
    for a, b in zip(one, many, strict=True):
        assert a.loglikelihoods == pytest.approx(b.loglikelihoods, rel=1e-5, abs=1e-5)
    ctx, cont = encode_pair(tok, "The cat", " ran far away from home")
    seq = torch.tensor([ctx + cont])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=seq).logits[0], -1)
    manual = sum(lp[len(ctx) - 1 + k, t].item() for k, t in enumerate(cont))
    assert one[1].loglikelihoods[1] == pytest.approx(manual, rel=1e-5)


def test_summary_statistics() -> None:
    items = [MultipleChoiceItem.with_choices("c", ["a", "b"], 0, subject="s1"), MultipleChoiceItem.with_choices("c", ["a", "b", "x", "y"], 0, subject="s1"),
             MultipleChoiceItem.with_choices("c", ["a", "b"], 0, subject="s2"), MultipleChoiceItem.with_choices("c", ["a", "b"], 0, subject="s2")]
    scores = [ItemScore((0.0, -1.0), 0, p, pn, it.subject) for it, p, pn in zip(items, [0, 1, 0, 0], [0, 0, 0, 0], strict=True)]
    r = summarize("t", scores, items)
    assert r.acc == 0.75 and r.acc_stderr == pytest.approx(math.sqrt(0.75 * 0.25 / 3))
    assert r.acc_norm == 1.0 and r.acc_norm_stderr == 0.0
    assert r.chance == pytest.approx((0.5 + 0.25 + 0.5 + 0.5) / 4)
    assert r.subject_acc == {"s1": 0.5, "s2": 1.0} and r.macro_acc == 0.75
    assert summarize("t", scores[:1], items[:1]).acc_stderr is None


def test_items_are_validated_and_lengths_are_bytes() -> None:
    assert MultipleChoiceItem.with_choices("c", ["é", "ab"], 0).norm_bytes == (2, 2)
    for bad in (lambda: MultipleChoiceItem.with_choices("c", ["a"], 0), lambda: MultipleChoiceItem.with_choices("c", ["a", "b"], 2)):
        with pytest.raises(ConfigError):
            bad()


def test_ties_go_to_the_first_choice_and_empty_task_is_refused() -> None:
    item = MultipleChoiceItem.with_choices("ab", ["c", "c"], 1, delimiter="")
    (s,) = score_items(successor, CharTok(), [item], 64)
    assert s.pred == 0
    with pytest.raises(ConfigError):
        evaluate_items("t", successor, CharTok(), [], 64)


def test_identical_inputs_share_one_forward_row() -> None:
    rows: list[int] = []

    def counting(ids: torch.Tensor) -> torch.Tensor:
        rows.append(ids.shape[0])
        return successor(ids)

    mixed = MultipleChoiceItem(("ab", "abc"), ("cd", "d"), 0, (2, 1))  # both choices feed "abc" to the model
    letters = MultipleChoiceItem.with_choices("xyz:", ["a", "b", "c", "d"], 0)  # all feed "xyz: " (answer letter last)
    m, lt = score_items(counting, CharTok(), [mixed, letters], 64, batch_size=8)
    assert sum(rows) == 2
    assert m.loglikelihoods == pytest.approx((0.0, 0.0), abs=1e-6)
    assert lt.loglikelihoods == pytest.approx((-40.0, -80.0, -80.0, -80.0), rel=1e-4)  # " " after ":" is wrong, "a" after " " right


def test_letter_answers_match_separate_forwards_on_a_real_model() -> None:
    tok = spm_tokenizer()
    model = make_tiny(vocab=len(tok))
    fn = lambda ids: model(input_ids=ids).logits  # noqa: E731
    prompt = "Which is a fruit?\nA. apple\nB. rock\nC. car\nD. cloud\nAnswer:"
    (s,) = score_items(fn, tok, [MultipleChoiceItem.with_choices(prompt, list("ABCD"), 0)], 128)
    for j, letter in enumerate("ABCD"):
        ctx, cont = encode_pair(tok, prompt, " " + letter)
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=torch.tensor([ctx + cont])).logits[0], -1)
        assert s.loglikelihoods[j] == pytest.approx(sum(lp[len(ctx) - 1 + k, t].item() for k, t in enumerate(cont)), rel=1e-5)
