"""One contract for every registered accuracy metric (``core.search.metrics.METRIC_FACTORIES``): a key-safe name,
a data identity that follows its settings, a finite, deterministic record from a model's logits, progress reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from core.checkpoint import open_checkpoint
from core.search.accuracy import AccuracyKey, AccuracyRecord
from core.search.metrics import METRIC_FACTORIES, MetricSettings, make_metric
from tests.factories import EVAL_FIXTURES, tiny_checkpoint


def _ppl(ckpt: Path, **over: Any) -> tuple[str, MetricSettings]:
    return "ppl", MetricSettings(**{"calib_text": ckpt / "calibration.txt", "window": 32, "max_windows": 2, **over})


def _mc(ckpt: Path, **over: Any) -> tuple[str, MetricSettings]:
    return "mc:piqa", MetricSettings(**{"data_dir": EVAL_FIXTURES / "data", "limit": 4, "batch_size": 8, **over})


#: registered name → (spec, settings) on the tiny tokenized checkpoint; ``over`` changes the evaluation settings
MEMBERS = {"ppl": _ppl, "mc": _mc}
CHANGED = {"ppl": {"window": 16}, "mc": {"limit": 3}}


def test_every_registered_metric_is_under_contract() -> None:
    assert set(METRIC_FACTORIES.names()) == set(MEMBERS) == set(CHANGED)


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from core.eval.target import load_tokenizer

    d = tiny_checkpoint(tmp_path_factory.mktemp("metric"), name="tiny-ckpt", tokenizer=True)
    ck = open_checkpoint(d)
    ck.elastic.set_shape(ck.strategy.space.smallest)
    return d, ck, load_tokenizer(d)


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_metric_contract(name: str, opened: Any) -> None:
    d, ck, tok = opened
    spec, settings = MEMBERS[name](d)
    m = make_metric(spec, settings, tok, 128)
    AccuracyKey("c" * 64, "L4-a1-f1", m.name, m.data_sha256)  # the name and identity fit a cache key
    assert len(m.data_sha256) == 64 and m.data_sha256 == make_metric(spec, settings, tok, 128).data_sha256
    assert make_metric(spec, MEMBERS[name](d, **CHANGED[name])[1], tok, 128).data_sha256 != m.data_sha256
    steps: list[tuple[int, int]] = []
    with torch.no_grad():
        rec = m.evaluate(ck.elastic, on_progress=lambda i, n: steps.append((i, n)))
        again = m.evaluate(ck.elastic)
    assert isinstance(rec, AccuracyRecord) and rec == again and rec.raw_name
    assert steps and steps[-1][0] == steps[-1][1] and [i for i, _ in steps] == sorted(i for i, _ in steps)
