"""The accuracy table on a tiny base+strategy checkpoint: convention, caching and keys, grouped shapes, metrics."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from core.checkpoint import open_checkpoint
from core.errors import ConfigError
from core.eval.perplexity import perplexity_from_ids, tokenize_stream
from core.search.accuracy import AccuracyTable
from core.search.cache import JsonAccuracyCache, MemoryAccuracyCache
from core.search.metrics import MetricSettings, PerplexityMetric, make_metric
from core.search.session import AccuracySettings, open_accuracy
from core.search.shapes import GroupedShape, activate
from core.spec import SubnetSpec
from tests.factories import EVAL_FIXTURES as FIXTURES
from tests.factories import tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("acc"), name="tiny-ckpt", tokenizer=True)


def _settings(ckpt_dir: Path, cache: Path, **ms: object) -> AccuracySettings:
    return AccuracySettings(ckpt_dir, "ppl", cache, MetricSettings(window=32, max_windows=3, **ms))  # type: ignore[arg-type]


def test_accuracy_is_minus_log_ppl_and_is_cached(ckpt_dir: Path, tmp_path: Path) -> None:
    ckpt, table = open_accuracy(_settings(ckpt_dir, tmp_path / "acc.json"))
    spec = SubnetSpec(3, 0.5, 1.0)
    rec = table.record(spec)
    ckpt.elastic.set_shape(spec)
    ids = tokenize_stream(_tokenizer(ckpt_dir), (ckpt_dir / "calibration.txt").read_text())
    with torch.no_grad():
        ref = perplexity_from_ids(ckpt.elastic, ids, 32, max_windows=3)
    assert rec.raw_name == "ppl" and rec.raw == pytest.approx(ref.ppl)
    assert rec.accuracy == pytest.approx(-math.log(ref.ppl)) and rec.detail["tokens_scored"] == 3 * 31
    assert table.evaluations == 1
    assert table.accuracy(spec) == rec.accuracy and table.evaluations == 1  # cache hit
    _, fresh = open_accuracy(_settings(ckpt_dir, tmp_path / "acc.json"))
    assert fresh.known(spec) == rec.accuracy and fresh.record(spec) == rec and fresh.evaluations == 0
    assert fresh.known(SubnetSpec(4, 1.0, 1.0)) is None


def test_smaller_shapes_score_differently(ckpt_dir: Path, tmp_path: Path) -> None:
    _, table = open_accuracy(_settings(ckpt_dir, tmp_path / "unused.json"), cache=MemoryAccuracyCache())
    accs = {s.key: table.accuracy(s) for s in (SubnetSpec(4), SubnetSpec(2, 0.5, 0.5))}
    assert len(set(accs.values())) == 2 and table.evaluations == 2
    assert not (tmp_path / "unused.json").exists()


def test_key_covers_data_and_checkpoint(ckpt_dir: Path, tmp_path: Path) -> None:
    cache = JsonAccuracyCache(tmp_path / "acc.json")
    _, a = open_accuracy(_settings(ckpt_dir, tmp_path / "acc.json"), cache=cache)
    _, b = open_accuracy(_settings(ckpt_dir, tmp_path / "acc.json", batch_size=2), cache=cache)
    spec = SubnetSpec(4, 0.5, 0.5)
    a.accuracy(spec)
    assert b.known(spec) is not None  # batch size is not part of the data identity
    ckpt, c = open_accuracy(AccuracySettings(ckpt_dir, "ppl", tmp_path / "acc.json", MetricSettings(window=16, max_windows=3)), cache=cache)
    assert c.known(spec) is None and c.metric.data_sha256 != a.metric.data_sha256
    other = AccuracyTable(ckpt.elastic, lambda s: activate(ckpt.elastic, s), "0" * 64, a.metric, cache)
    assert other.known(spec) is None
    assert len(cache) == 1


def test_grouped_shapes_set_per_layer_widths(ckpt_dir: Path) -> None:
    ckpt = open_checkpoint(ckpt_dir)
    el = ckpt.elastic
    ids = torch.randint(0, 512, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        activate(el, SubnetSpec(4, 0.5, 1.0))
        uniform = el(ids)
        activate(el, GroupedShape(4, (0.5, 0.5), (1.0, 1.0)))
        same = el(ids)
        activate(el, GroupedShape(4, (1.0, 0.5), (0.5, 1.0)))
        mixed = el(ids)
    assert torch.equal(uniform, same)
    assert not torch.allclose(uniform, mixed)
    info = el.info
    q_rows = [el.elastic_linears(i)["q_proj"].active_weight().shape[0] for i in el.active_layers]
    ffn = [el.elastic_linears(i)["gate_proj"].active_weight().shape[0] for i in el.active_layers]
    full_q = info.num_heads * info.head_dim
    assert q_rows == [full_q, full_q, full_q // 2, full_q // 2]
    assert ffn == [info.intermediate_size // 2] * 2 + [info.intermediate_size] * 2


def test_grouped_shape_keys() -> None:
    g = GroupedShape(8, (1.0, 0.75), (0.875, 0.625))
    assert g.key == "L8-a1,0.75-f0.875,0.625" and GroupedShape.parse(g.key) == g
    assert GroupedShape(8, (0.75, 0.75), (1.0, 1.0)).key == SubnetSpec(8, 0.75, 1.0).key
    assert GroupedShape.parse("L8-a0.75-f1", groups=2) == GroupedShape(8, (0.75, 0.75), (1.0, 1.0))
    assert GroupedShape(5, (1.0, 1.0), (1.0, 1.0)).group_sizes() == [3, 2]
    with pytest.raises(ConfigError, match="cannot form 3 groups"):
        GroupedShape(2, (1.0,) * 3, (1.0,) * 3)
    with pytest.raises(ConfigError, match="bad grouped shape key"):
        GroupedShape.parse("L8-x")


def test_metric_registry_and_inputs(ckpt_dir: Path, tmp_path: Path) -> None:
    tok = _tokenizer(ckpt_dir)
    with pytest.raises(ConfigError, match="unknown accuracy metric 'bleu'"):
        make_metric("bleu", MetricSettings(), tok, 128)
    with pytest.raises(ConfigError, match="takes no argument"):
        make_metric("ppl:x", MetricSettings(calib_text=ckpt_dir / "calibration.txt"), tok, 128)
    with pytest.raises(ConfigError, match="calibration text not found"):
        make_metric("ppl", MetricSettings(calib_text=tmp_path / "none.txt"), tok, 128)
    with pytest.raises(ConfigError, match="shorter than one window"):
        PerplexityMetric(torch.arange(10), 32)
    m = make_metric("ppl", MetricSettings(calib_text=ckpt_dir / "calibration.txt", window=4096), tok, 128)
    assert isinstance(m, PerplexityMetric) and m.window == 128  # capped by the model context


def test_multiple_choice_metric(ckpt_dir: Path, tmp_path: Path) -> None:
    s = MetricSettings(data_dir=FIXTURES / "data", limit=4, batch_size=8)
    _, table = open_accuracy(AccuracySettings(ckpt_dir, "mc:piqa", tmp_path / "unused.json", s), cache=MemoryAccuracyCache())
    assert table.metric.name == "mc:piqa:acc_norm"
    rec = table.record(SubnetSpec(4))
    assert 0.0 <= rec.accuracy <= 1.0 and rec.raw == rec.accuracy and rec.detail["n"] == 4 and rec.detail["chance"] == 0.5
    with pytest.raises(ConfigError, match="needs a task"):
        make_metric("mc", s, _tokenizer(ckpt_dir), 128)


def test_missing_calibration_text_is_named(tmp_path: Path) -> None:
    d = tiny_checkpoint(tmp_path, name="tiny-ckpt", tokenizer=True)
    (d / "calibration.txt").unlink()
    with pytest.raises(ConfigError, match="pass --calib-text"):
        open_accuracy(_settings(d, tmp_path / "acc.json"))


def _tokenizer(d: Path):  # noqa: ANN202
    from core.eval.target import load_tokenizer

    return load_tokenizer(d)
