"""Predictor: physical fit, k-NN and their hybrid chosen by repeated cross-validation; query vs KV heads; range
flags, JSON state (and version-1 files), measured-table lookup."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import ConfigError
from core.latency import LatencyModel
from core.spec import SubnetSpec
from profilers.predictor.features import ShapeDims, features
from profilers.predictor.fit import cross_validate, fit_knn, fit_physical
from profilers.predictor.model import LatencyPredictor, MeasuredTableModel, kept_dims
from profilers.table import ModelFacts, parse_table
from profilers.workload import Workload
from tests.factories import profile_table, table_row

MODEL = ModelFacts(model_type="llama", num_layers=12, hidden_size=256, num_heads=16, num_kv_heads=8, head_dim=16,
                   intermediate_size=768, vocab_size=8192)
WL = Workload(1, 128, 64)
WIDTHS = (1.0, 0.875, 0.75, 0.625)


def synthetic_table(law, *, depths=range(2, 13, 2), noise: float = 0.0, seed: int = 0, unit: str = "kv_group") -> dict:
    rng = np.random.default_rng(seed)
    rows = []
    for n in depths:
        for a in WIDTHS:
            for f in WIDTHS:
                d = kept_dims(MODEL, SubnetSpec(n, a, f), unit)
                t = law(d) * (1 + noise * rng.standard_normal())
                rows.append(table_row(SubnetSpec(n, a, f), d.kv_groups, d.ffn_channels, tpot=t, ttft=3 * t, q_heads=d.q_heads,
                                      peak_mem_mb=5 + 0.1 * n * d.ffn_channels / 64))
    return profile_table(rows, model=MODEL.model_dump(), workload=WL.key)


def physical_law(d: ShapeDims) -> float:
    x = features(MODEL, WL, d, "decode")
    return float(x @ np.array([0.8, 0.05, 0.9, 0.6]))


def test_physical_form_wins_on_physical_data_and_reports_held_out_error() -> None:
    pred = LatencyPredictor.fit(parse_table(synthetic_table(physical_law, noise=0.01)))
    tp = pred.state.targets["tpot_ms"]
    assert tp.method == "physical"
    assert tp.cv["physical"].mape_pct < tp.cv["knn"].mape_pct
    assert tp.held_out.mape_pct < 3 and tp.held_out.within_10pct > 0.95 and tp.held_out.n == 96
    assert tp.held_out.splits == 20  # 4 repeats of 5-fold
    assert set(pred.state.targets) == {"ttft_ms", "tpot_ms", "peak_mem_mb"}
    est = pred.estimate(SubnetSpec(7, 0.75, 0.625))
    truth = physical_law(kept_dims(MODEL, SubnetSpec(7, 0.75, 0.625)))
    assert est.in_range and est.tpot_ms == pytest.approx(truth, rel=0.05)


def test_knn_wins_when_the_law_is_not_affine() -> None:
    def bumpy(d: ShapeDims) -> float:  # a step in depth that no affine-in-L form can follow
        return 1.0 + (8.0 if d.num_layers >= 8 else 0.0) + 0.001 * d.ffn_channels

    pred = LatencyPredictor.fit(parse_table(synthetic_table(bumpy, depths=[2, 3, 4, 5, 6, 8, 9, 10, 11, 12])))
    tp = pred.state.targets["tpot_ms"]
    assert tp.method in ("knn", "hybrid") and tp.held_out.mape_pct < tp.cv["physical"].mape_pct
    assert pred.estimate(SubnetSpec(11, 1, 1)).tpot_ms == pytest.approx(bumpy(kept_dims(MODEL, SubnetSpec(11, 1, 1))))


def test_hybrid_corrects_a_physical_law_with_size_effects() -> None:
    def lumpy(d: ShapeDims) -> float:  # physical, but one MLP size runs 30 % slower (an unlucky GEMM size)
        return physical_law(d) * (1.3 if d.ffn_channels == 672 else 1.0)

    pred = LatencyPredictor.fit(parse_table(synthetic_table(lumpy, depths=range(2, 13))))
    tp = pred.state.targets["tpot_ms"]
    assert tp.method == "hybrid" and tp.cv["hybrid"].mape_pct < tp.cv["physical"].mape_pct / 2
    spec = SubnetSpec(7, 0.75, 0.875)
    assert pred.estimate(spec).tpot_ms == pytest.approx(lumpy(kept_dims(MODEL, spec)), rel=0.05)


def test_query_heads_and_kv_heads_are_separate_dims() -> None:
    """q_head units keep every KV head: fewer q/o weights and score FLOPs, the same KV cache."""
    kv = kept_dims(MODEL, SubnetSpec(6, 0.5, 1), "kv_group")
    qh = kept_dims(MODEL, SubnetSpec(6, 0.5, 1), "q_head")
    assert (kv.q_heads, kv.kv_groups) == (8, 4) and (qh.q_heads, qh.kv_groups) == (8, 8)
    fk, fq = features(MODEL, WL, kv, "decode"), features(MODEL, WL, qh, "decode")
    assert fq[2] > fk[2]  # same q/o bytes, more k/v weights and KV cache
    assert features(MODEL, WL, ShapeDims(6, 4, 768), "prefill")[2] == features(MODEL, WL, kv, "prefill")[2]  # None = full complement
    pred = LatencyPredictor.fit(parse_table(synthetic_table(physical_law, unit="q_head")))
    assert LatencyPredictor(pred.state).attn_unit == "q_head"  # as the service rebuilds it from the stored state
    assert pred.attn_unit == "q_head" and pred.state.range["kv_groups"] == (8, 8) and pred.state.range["q_heads"] == (8, 16)
    spec = SubnetSpec(7, 0.75, 0.625)
    assert pred.estimate(spec).tpot_ms == pytest.approx(physical_law(kept_dims(MODEL, spec, "q_head")), rel=0.02)
    with pytest.raises(ConfigError, match="q_heads"):
        parse_table(profile_table([table_row(SubnetSpec(4, 1.0, 1.0), 2, 128, tpot=1, ttft=1, q_heads=3)]))


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
    v1 = json.loads(p.read_text())
    v1["schema_version"] = 1
    for t in v1["targets"].values():
        t["points"] = [[a, c, f, v] for a, _, c, f, v in t["points"]]
    del v1["range"]["q_heads"]
    p.write_text(json.dumps(v1))
    old = LatencyPredictor.load(p)
    assert old.state.targets["tpot_ms"].points == pred.state.targets["tpot_ms"].points and old.state.range == pred.state.range
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
    t = parse_table(profile_table())
    m: LatencyModel = MeasuredTableModel(t)
    e = m.estimate(SubnetSpec(4))
    assert (e.ttft_ms, e.tpot_ms, e.peak_mem_mb, e.in_range) == (2.0, 2.0, 10.0, True)
    assert m.gen_len == 8
    with pytest.raises(ConfigError, match="L3-a1-f1 was not measured"):
        m.estimate(SubnetSpec(3))


def test_cross_validation_detects_a_bad_model() -> None:
    X = np.stack([np.ones(20), np.arange(1, 21.0)], axis=1)
    y = np.arange(1, 21.0) ** 2
    lin = cross_validate(fit_physical, X, X[:, 1:], y)
    knn = cross_validate(fit_knn, X, X[:, 1:], y)
    assert lin.mape_pct > 10 and 0 <= lin.within_10pct < 1 and knn.n == 20 and lin.max_ape_pct >= lin.mape_pct
