"""The multiple-choice calibration metric of the depth DP: equal to the evaluator's acc_norm on the same items,
through the DP's cached scorer (packed rows, their own masks), with removed layers too."""

from __future__ import annotations

import math

import pytest
import torch

from core.data.paths import FIXTURES_DIR
from core.elastic.model import ElasticModel
from core.errors import ConfigError
from core.eval.multiple_choice import MultipleChoiceItem, score_items
from core.eval.target import load_tokenizer
from core.eval.tasks import load_task
from core.strategy.depth_dp import ModelScorer, depth_dp
from core.strategy.mc_metric import ChoiceCrossEntropy
from tests.conftest import make_tiny

DATA = FIXTURES_DIR / "eval" / "data"
TOKENIZER = FIXTURES_DIR / "eval" / "tokenizer"


def _items() -> list[MultipleChoiceItem]:
    out: list[MultipleChoiceItem] = []
    for task in ("hellaswag", "piqa", "winogrande", "mmlu"):
        out += load_task(task, DATA)[:5]
    return out


def _reference(em: ElasticModel, tok: object, items: list[MultipleChoiceItem]) -> tuple[float, float]:
    """(mean gold cross-entropy over the softmax of acc_norm scores, 1 − acc_norm) from the plain evaluator."""
    scores = score_items(em, tok, items, 128, batch_size=4, packed=False)
    ce, err = 0.0, 0.0
    for s, it in zip(scores, items, strict=True):
        normed = torch.tensor([v / n for v, n in zip(s.loglikelihoods, it.norm_bytes, strict=True)], dtype=torch.float64)
        ce += float(-torch.log_softmax(normed, 0)[it.gold])
        err += float(s.pred_norm != it.gold)
    return ce / len(items), err / len(items)


@pytest.fixture(scope="module")
def setup() -> tuple[ElasticModel, object, list[MultipleChoiceItem]]:
    tok = load_tokenizer(TOKENIZER)
    torch.manual_seed(0)
    return ElasticModel(make_tiny("llama", layers=5, vocab=len(tok), seed=2)).eval(), tok, _items()


@pytest.mark.parametrize("use_cache", [True, False])
def test_metric_equals_the_evaluator_with_and_without_layers(setup: tuple, use_cache: bool) -> None:
    em, tok, items = setup
    ce = ModelScorer(em, ChoiceCrossEntropy(items, tok, 128, batch_size=3), use_cache=use_cache)
    count = ModelScorer(em, ChoiceCrossEntropy(items, tok, 128, batch_size=3, loss="count"), use_cache=use_cache)
    for removed, below in ((frozenset(), 5), (frozenset({2}), 2), (frozenset({1, 3}), 1)):
        em.active_layers = tuple(i for i in range(5) if i not in removed)  # the plain forward runs these
        ref_ce, ref_err = _reference(em, tok, items)
        em.active_layers = tuple(range(5))
        assert ce.score(removed, intact_below=below) == pytest.approx(ref_ce, abs=1e-4)
        assert count.score(removed, intact_below=below) == pytest.approx(ref_err)


def test_dp_runs_on_the_metric(setup: tuple) -> None:
    em, tok, items = setup
    r = depth_dp(5, 3, 1, ModelScorer(em, ChoiceCrossEntropy(items, tok, 128)))
    assert set(r.kept) == {3, 4, 5} and all(math.isfinite(v) for v in r.scores.values())


def test_bad_settings_are_named(setup: tuple) -> None:
    _, tok, items = setup
    with pytest.raises(ConfigError, match="unknown multiple-choice loss 'acc'"):
        ChoiceCrossEntropy(items, tok, 128, loss="acc")
    with pytest.raises(ConfigError, match="at least one item"):
        ChoiceCrossEntropy([], tok, 128)
