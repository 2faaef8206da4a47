"""The calibrate recipe: config validation, calibration windows, and a full Stage 1 run on a tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.elastic.model import ElasticModel
from core.errors import ConfigError, StrategyError
from core.model.loader import ModelInfo
from core.spec import ShapeSpace
from core.strategy.calibrate import CalibrationConfig, CalibrationProgress, calibrate, calibration_windows
from core.strategy.depth_dp import ModelScorer, NextTokenNLL, depth_dp
from core.strategy.schema import Strategy
from tests.conftest import make_tiny


def _tokens(n: int = 200, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 97, size=n).astype(np.uint16)


def test_calibration_windows() -> None:
    t = np.arange(100)
    w = calibration_windows(t, 16)
    assert w.shape == (6, 16) and w.dtype == torch.int64 and int(w[1, 0]) == 16
    assert calibration_windows(t, 16, max_tokens=40).shape == (2, 16)
    assert calibration_windows(t, 16, num_windows=3).shape == (3, 16)
    with pytest.raises(ConfigError, match="fewer than one window"):
        calibration_windows(t, 16, max_tokens=15)


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        (dict(allocation="greedy"), "allocation"),
        (dict(widths=(0.5, 0.25)), "must include 1"),
        (dict(window=1), "window"),
        (dict(bias_modules=("mlp",)), "bias modules"),
        (dict(max_tokens=0), "max_tokens"),
    ],
)
def test_config_validation(kwargs: dict, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        CalibrationConfig(min_layers=2, **kwargs)


def test_config_checked_against_model() -> None:
    info = ModelInfo.from_config(make_tiny("llama", layers=4).config)
    with pytest.raises(ConfigError, match="min_layers"):
        CalibrationConfig(min_layers=5).check_model(info)
    with pytest.raises(ConfigError, match="min_layers"):
        CalibrationConfig(min_layers=1, keep_last=2).check_model(info)
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        CalibrationConfig(min_layers=2, window=4096).check_model(info)


def test_calibrate_tiny_model_end_to_end(tmp_path: Path) -> None:
    model = make_tiny("llama", layers=6, seed=2)
    info = ModelInfo.from_config(model.config)
    cfg = CalibrationConfig(min_layers=3, widths=(1.0, 0.75, 0.5), window=32, batch_size=2, bias_modules=("attn", "ffn"))
    events: list[CalibrationProgress] = []
    tokens = _tokens()
    st = calibrate(model, info, "ab" * 32, tokens, cfg, calib_sha256="cd" * 32, on_progress=events.append)

    assert st.space == ShapeSpace(6, 3, (1.0, 0.75, 0.5)) and st.allocation == "uniform" and st.keep_last == 1
    assert sorted(st.depth) == [3, 4, 5, 6] and st.depth[6] == tuple(range(6)) and all(5 in v for v in st.depth.values())
    m = st.meta
    assert m["tokens_used"] == 6 * 32 and m["num_windows"] == 6 and m["calib_sha256"] == "cd" * 32
    assert m["metric"] == "nll" and m["bias_modules"] == ["attn", "ffn"] and set(m["dp_scores"]) == {"3", "4", "5", "6"}
    assert m["layer_forwards"]["cached"] < m["layer_forwards"]["uncached"]
    assert m["dp_evaluations"] == 1 + sum(min(n, 3) for n in range(1, 6))
    assert {"stats", "width", "depth", "total"} <= set(m["wall_s"])
    assert len(st.biases) == 2 * 2 * 6
    assert [e.stage for e in events].count("stats") == 3 and events[-1] == CalibrationProgress("depth", 5, 5)

    # the depth part equals a direct DP on the same windows
    em = ElasticModel(make_tiny("llama", layers=6, seed=2))
    ref = depth_dp(6, 3, 1, ModelScorer(em, NextTokenNLL(calibration_windows(tokens, 32), 2)))
    assert {d: ref.kept[d] for d in st.depth} == st.depth
    assert m["dp_scores"] == pytest.approx({str(d): s for d, s in ref.scores.items()})

    loaded = Strategy.load(st.save(tmp_path / "strat"))
    assert loaded.depth == st.depth and loaded.attn == st.attn and loaded.ffn == st.ffn and loaded.meta == st.meta
    em2 = ElasticModel(make_tiny("llama", layers=6, seed=2), loaded)
    ids = torch.randint(0, 97, (1, 7))
    with torch.no_grad():
        for spec in loaded.space:
            em2.set_shape(spec)
            assert torch.isfinite(em2(ids)).all()


def test_elastic_model_input_is_restored_and_matches_hf_input() -> None:
    model = make_tiny("llama", layers=4, seed=5)
    info = ModelInfo.from_config(model.config)
    cfg = CalibrationConfig(min_layers=2, widths=(1.0, 0.5), window=16, batch_size=4, bias_modules=())
    st_hf = calibrate(make_tiny("llama", layers=4, seed=5), info, "00", _tokens(), cfg)
    em = ElasticModel(model, st_hf)
    em.set_shape("L2-a0.5-f0.5")
    em.train()
    st_em = calibrate(em, info, "00", _tokens(), cfg)
    assert em.spec.key == "L2-a0.5-f0.5" and em.training
    assert st_em.depth == st_hf.depth and st_em.attn == st_hf.attn and st_em.ffn == st_hf.ffn
    assert st_em.biases == {} and st_em.meta["bias_modules"] == []


def test_bad_inputs_are_refused() -> None:
    model = make_tiny("llama", layers=4)
    info = ModelInfo.from_config(model.config)
    cfg = CalibrationConfig(min_layers=2, widths=(1.0, 0.5), window=16)
    with pytest.raises(ConfigError, match="outside the model's vocabulary"):
        calibrate(model, info, "00", np.full(64, 500), cfg)
    with pytest.raises(ConfigError, match="fewer than one window"):
        calibrate(model, info, "00", _tokens(10), cfg)
    other = ModelInfo.from_config(make_tiny("llama", layers=3).config)
    with pytest.raises(StrategyError, match="ModelInfo"):
        calibrate(model, other, "00", _tokens(), cfg)
