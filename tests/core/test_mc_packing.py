"""Shared-prefix packed multiple-choice scoring: the layout, the mask, and parity with unpacked scoring."""

from __future__ import annotations

import pytest
import torch

from core.data.paths import FIXTURES_DIR, REPO_ROOT
from core.errors import ConfigError
from core.eval.multiple_choice import MultipleChoiceItem, score_items
from core.eval.packing import PackedLM, common_prefix_len, pack_item, segment_mask
from core.eval.target import HFCausalLM, load_tokenizer, open_checkpoint_target
from core.eval.tasks import load_task
from tests.conftest import make_tiny

DATA = FIXTURES_DIR / "eval" / "data"
TOKENIZER = FIXTURES_DIR / "eval" / "tokenizer"
TINY_CKPT = REPO_ROOT / "models" / "amoeba-tiny-smol"


def test_pack_item_lays_out_prefix_then_distinct_suffixes() -> None:
    # choice 0 and 2 have identical inputs and share a segment; targets are the last input positions
    row = pack_item(7, [(5, 6, 7, 8, 1, 2), (5, 6, 7, 8, 3, 4, 9), (5, 6, 7, 8, 1, 2)], [(2, 0), (4, 9, 0), (2, 1)])
    assert row.ids == (5, 6, 7, 8, 1, 2, 3, 4, 9)
    assert row.positions == (0, 1, 2, 3, 4, 5, 4, 5, 6)
    assert row.segments == (0, 0, 0, 0, 1, 1, 2, 2, 2)
    assert [(s.item, s.choice, s.rows) for s in row.spans] == [(7, 0, (4, 5)), (7, 1, (6, 7, 8)), (7, 2, (4, 5))]
    assert row.spans[1].targets == (4, 9, 0)


def test_targets_reaching_into_the_prefix_map_to_prefix_rows() -> None:
    row = pack_item(0, [(1, 2, 3), (1, 2, 3)], [(9, 9), (8, 8)])  # identical one-segment inputs
    assert row.ids == (1, 2, 3) and row.spans[0].rows == (1, 2) == row.spans[1].rows
    assert common_prefix_len([(1, 2), (1, 3)]) == 1 and common_prefix_len([]) == 0


def test_segment_mask_lets_suffixes_see_the_prefix_but_not_each_other() -> None:
    row = pack_item(0, [(1, 2, 3), (1, 2, 4, 5)], [(3,), (5,)])  # row: 1 2 | 3 | 4 5
    m = segment_mask([row], width=6)[0, 0] == 0  # True = may attend; width 6 adds one padding position
    expect = torch.tensor([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 0, 1, 0, 0],
        [1, 1, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],  # padding attends to itself only
    ], dtype=torch.bool)
    assert torch.equal(m, expect)


def _items() -> list[MultipleChoiceItem]:
    """Shared-context (HellaSwag, PIQA), partial-scoring (WinoGrande) and one-letter-answer (MMLU) items."""
    out: list[MultipleChoiceItem] = []
    for task in ("hellaswag", "piqa", "winogrande", "mmlu"):
        out += load_task(task, DATA)[:6]
    return out


def _assert_parity(model: PackedLM, tok: object, items: list[MultipleChoiceItem], max_len: int) -> None:
    packed = score_items(model, tok, items, max_len, batch_size=3)  # type: ignore[arg-type]
    plain = score_items(model, tok, items, max_len, batch_size=3, packed=False)  # type: ignore[arg-type]
    for a, b in zip(packed, plain, strict=True):
        assert a.loglikelihoods == pytest.approx(b.loglikelihoods, abs=2e-4)
        assert (a.pred, a.pred_norm) == (b.pred, b.pred_norm)


@pytest.mark.parametrize("max_len", [128, 100])  # 100: inputs are truncated from the left, prefixes shrink
def test_packed_equals_plain_on_a_stock_hf_model(max_len: int) -> None:
    tok = load_tokenizer(TOKENIZER)
    model = HFCausalLM(make_tiny("llama", vocab=len(tok)))
    assert isinstance(model, PackedLM)
    _assert_parity(model, tok, _items(), max_len)


def test_packed_equals_plain_on_the_checkpoint_at_a_pruned_shape() -> None:
    target = open_checkpoint_target(TINY_CKPT)
    el = target.logits_fn
    space = el.strategy.space  # type: ignore[attr-defined]
    el.set_shape(space.smallest)  # type: ignore[attr-defined]
    _assert_parity(el, target.tokenizer, _items(), target.max_positions)  # type: ignore[arg-type]


def test_forcing_packed_on_a_plain_function_is_refused() -> None:
    tok = load_tokenizer(TOKENIZER)
    with pytest.raises(ConfigError, match="PackedLM"):
        score_items(lambda ids: ids, tok, _items()[:1], 64, packed=True)
