"""Predictor: physical fit vs k-NN by cross-validation, range flags, JSON state, measured-table lookup."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import ConfigError
from core.latency import LatencyModel
from core.spec import SubnetSpec
from profilers.predictor.features import ShapeDims, features
from profilers.predictor.fit import cross_validate, fit_knn, fit_linear
from profilers.predictor.model import LatencyPredictor, MeasuredTableModel, kept_dims
from profilers.table import ModelFacts, parse_table
from profilers.workload import Workload
from tests.profilers.conftest import table_dict

MODEL = ModelFacts(model_type="llama", num_layers=12, hidden_size=256, num_heads=16, num_kv_heads=8, head_dim=16,
                   intermediate_size=768, vocab_size=8192)
WL = Workload(1, 128, 64)
WIDTHS = (1.0, 0.875, 0.75, 0.625)


def _stat(v: float) -> dict:
    return {"median": v, "p90": v * 1.02, "std": v * 0.01, "repetitions": 3}


def synthetic_table(law, *, depths=range(2, 13, 2), noise: float = 0.0, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    rows = []
    for n in depths:
        for a in WIDTHS:
            for f in WIDTHS:
                d = kept_dims(MODEL, SubnetSpec(n, a, f))
                t = law(d) * (1 + noise * rng.standard_normal())
                rows.append({"shape": SubnetSpec(n, a, f).key, "num_layers": n, "kv_groups": d.kv_groups, "ffn_channels": d.ffn_channels,
                             "ttft_ms": _stat(3 * t), "tpot_ms": _stat(t), "peak_mem_mb": 5 + 0.1 * n * d.ffn_channels / 64})
    return table_dict(rows, model=MODEL.model_dump(), workload=WL.key)


def physical_law(d: ShapeDims) -> float:
    x = features(MODEL, WL, d, "decode")
    return float(x @ np.array([0.8, 0.05, 0.9, 0.6]))


def test_physical_form_wins_on_physical_data_and_reports_held_out_error() -> None:
    pred = LatencyPredictor.fit(parse_table(synthetic_table(physical_law, noise=0.01)))
    tp = pred.state.targets["tpot_ms"]
    assert tp.method == "physical"
    assert tp.cv["physical"].mape_pct < tp.cv["knn"].mape_pct
    assert tp.held_out.mape_pct < 3 and tp.held_out.within_10pct > 0.95 and tp.held_out.n == 96
    assert set(pred.state.targets) == {"ttft_ms", "tpot_ms", "peak_mem_mb"}
    est = pred.estimate(SubnetSpec(7, 0.75, 0.625))
    truth = physical_law(kept_dims(MODEL, SubnetSpec(7, 0.75, 0.625)))
    assert est.in_range and est.tpot_ms == pytest.approx(truth, rel=0.05)


def test_knn_wins_when_the_law_is_not_affine() -> None:
    def bumpy(d: ShapeDims) -> float:  # a step in depth that no affine-in-L form can follow
        return 1.0 + (8.0 if d.num_layers >= 8 else 0.0) + 0.001 * d.ffn_channels

    pred = LatencyPredictor.fit(parse_table(synthetic_table(bumpy, depths=[2, 3, 4, 5, 6, 8, 9, 10, 11, 12])))
    assert pred.state.targets["tpot_ms"].method == "knn"
    assert pred.estimate(SubnetSpec(11, 1, 1)).tpot_ms == pytest.approx(bumpy(kept_dims(MODEL, SubnetSpec(11, 1, 1))))


def test_out_of_range_queries_are_flagged(tmp_path) -> None:
    pred = LatencyPredictor.fit(parse_table(synthetic_table(physical_law, depths=range(4, 11, 2))))
    assert pred.estimate(SubnetSpec(6, 0.75, 0.75)).in_range
    assert not pred.estimate(SubnetSpec(12, 1, 1)).in_range
    assert not pred.estimate(SubnetSpec(2, 1, 1)).in_range
    with pytest.raises(ConfigError, match="exceed"):
        pred.estimate(SubnetSpec(13, 1, 1))


def test_state_is_json_data_and_roundtrips(tmp_path) -> None:
    table = parse_table(synthetic_table(physical_law, noise=0.02))
    pred = LatencyPredictor.fit(table)
    p = tmp_path / "pred.json"
    pred.save(p)
    data = json.loads(p.read_text())
    assert data["table_sha256"] == table.content_sha256() and data["workload"] == "b1-p128-g64"
    back = LatencyPredictor.load(p)
    for spec in (SubnetSpec(5, 0.625, 1), SubnetSpec(12, 1, 0.75)):
        assert back.estimate(spec) == pred.estimate(spec)
    m: LatencyModel = back
    assert m.gen_len == 64
    data["targets"]["tpot_ms"]["method"] = "magic"
    p.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"targets\.tpot_ms\.method"):
        LatencyPredictor.load(p)


def test_busy_rows_are_left_out_and_too_few_rows_refused() -> None:
    d = synthetic_table(physical_law, depths=[4, 8])
    for r in d["rows"][5:]:
        r["busy"] = True
    with pytest.raises(ConfigError, match="at least 6 non-busy"):
        LatencyPredictor.fit(parse_table(d))
    assert LatencyPredictor.fit(parse_table(d), include_busy=True).held_out("tpot_ms").n == 32


def test_measured_table_model_is_exact() -> None:
    t = parse_table(table_dict())
    m: LatencyModel = MeasuredTableModel(t)
    e = m.estimate(SubnetSpec(4))
    assert (e.ttft_ms, e.tpot_ms, e.peak_mem_mb, e.in_range) == (2.0, 2.0, 10.0, True)
    assert m.gen_len == 8
    with pytest.raises(ConfigError, match="L3-a1-f1 was not measured"):
        m.estimate(SubnetSpec(3))


def test_cross_validation_detects_a_bad_model() -> None:
    X = np.stack([np.ones(20), np.arange(1, 21.0)], axis=1)
    y = np.arange(1, 21.0) ** 2
    lin = cross_validate(fit_linear, X, y)
    knn = cross_validate(fit_knn, X[:, 1:], y)
    assert lin.mape_pct > 10 and 0 <= lin.within_10pct < 1 and knn.n == 20
