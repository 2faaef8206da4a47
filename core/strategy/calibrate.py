"""The Stage 1 recipe: calibration windows → channel statistics → width selection → depth DP → ``Strategy``.

``CalibrationConfig`` lives in the torch-free ``core.strategy.config`` (imported here, so both paths work).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from core.elastic.model import ElasticModel
from core.errors import ConfigError, StrategyError
from core.model.loader import ModelInfo
from core.spec import ShapeSpace, SubnetSpec
from core.strategy.config import CalibrationConfig
from core.strategy.depth_dp import ModelScorer, NextTokenNLL, depth_dp
from core.strategy.schema import Strategy
from core.strategy.width import ChannelStatsRecorder, select_widths


@dataclass(frozen=True)
class CalibrationProgress:
    """One progress event: ``stage`` is ``"stats"`` (channel statistics) or ``"depth"`` (DP steps)."""

    stage: str
    done: int
    total: int


@dataclass
class _Timer:
    wall_s: dict[str, float] = field(default_factory=dict)

    def lap(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.wall_s[name] = round(now - start, 3)
        return now


def _json_float(x: float) -> float | None:
    return x if math.isfinite(x) else None


def calibration_windows(
    tokens: np.ndarray | torch.Tensor | Sequence[int], window: int, max_tokens: int | None = None, num_windows: int | None = None
) -> torch.Tensor:
    """Consecutive non-overlapping windows ``[W, window]`` (int64) from the start of ``tokens``."""
    t = torch.as_tensor(np.asarray(tokens, dtype=np.int64)).reshape(-1)
    if max_tokens is not None:
        t = t[:max_tokens]
    w = t.numel() // window
    if num_windows is not None:
        w = min(w, num_windows)
    if w < 1:
        raise ConfigError(f"calibration data has {t.numel()} usable tokens, fewer than one window of {window}")
    return t[: w * window].reshape(w, window).clone()


def calibrate(
    model: PreTrainedModel | ElasticModel,
    info: ModelInfo,
    model_sha256: str,
    tokens: np.ndarray | torch.Tensor | Sequence[int],
    config: CalibrationConfig,
    *,
    calib_sha256: str | None = None,
    on_progress: Callable[[CalibrationProgress], None] | None = None,
    reuse_depth: Strategy | None = None,
) -> Strategy:
    """Run Stage 1 on ``model`` (an HF model is wrapped in place) and return a validated ``Strategy``.

    The model is used at its dense shape; an ``ElasticModel``'s active shape and training mode are restored.
    ``calib_sha256`` identifies the calibration text in the strategy's metadata. ``reuse_depth``: take the
    kept-layer sets from that strategy (same model, same depth range and calibration windows) instead of
    running the DP again; the width part is selected anew.
    """
    em = model if isinstance(model, ElasticModel) else ElasticModel(model)
    if em.info != info:
        raise StrategyError("the given ModelInfo does not describe the given model")
    config.check_model(info)
    windows = calibration_windows(tokens, config.window, config.max_tokens, config.num_windows)
    ffn_ladder, attn_ladder = config.ladders(info)
    if reuse_depth is not None:
        _check_reusable(reuse_depth, info, config, hashlib.sha256(windows.numpy().tobytes()).hexdigest())
    if int(windows.max()) >= info.vocab_size:
        raise ConfigError(f"calibration token id {int(windows.max())} is outside the model's vocabulary ({info.vocab_size}): wrong tokenizer?")
    report = on_progress or (lambda p: None)
    prev_spec, was_training = em.spec, em.training
    timer, t0 = _Timer(), time.perf_counter()
    try:
        em.eval()
        em.set_shape(SubnetSpec(info.num_layers, 1.0, 1.0))
        dev = em.hf.lm_head.weight.device
        batches = list(windows.split(config.batch_size))
        with torch.no_grad(), ChannelStatsRecorder(em) as rec:
            for i, b in enumerate(batches):
                em(b.to(dev))
                report(CalibrationProgress("stats", i + 1, len(batches)))
        t = timer.lap("stats", t0)
        sel = select_widths(em, rec.stats, ffn_ladder, allocation=config.allocation, bias_modules=config.bias_modules,
                            attn_widths=attn_ladder, attn_unit=config.attn_unit)
        t = timer.lap("width", t)
        scorer = ModelScorer(em, NextTokenNLL(windows, config.batch_size), use_cache=config.use_cache)
        if reuse_depth is None:
            depth_kept = depth_dp(info.num_layers, config.min_layers, config.keep_last, scorer,
                                  on_step=lambda n, tot: report(CalibrationProgress("depth", n, tot)))
            depth_meta = _depth_meta(depth_kept.scores, depth_kept.evaluations, scorer)
            kept = depth_kept.kept
        else:
            kept = reuse_depth.depth
            depth_meta = {k: reuse_depth.meta[k] for k in ("dp_scores", "dp_perplexity", "dp_evaluations", "layer_forwards") if k in reuse_depth.meta}
            depth_meta["depth_reused_from"] = {"calib_tokens_sha256": reuse_depth.meta.get("calib_tokens_sha256"), "wall_s": reuse_depth.meta.get("wall_s")}
        timer.lap("depth", t)
        timer.lap("total", t0)
    finally:
        em.set_shape(prev_spec)
        em.train(was_training)
    meta = {
        "method": "amoeba-stage1",
        "depth_method": "dp",
        "width_method": "flap-fluctuation",
        "metric": scorer.metric.name,
        "calib_sha256": calib_sha256,
        "calib_tokens_sha256": hashlib.sha256(windows.numpy().tobytes()).hexdigest(),
        "tokens_used": int(windows.numel()),
        "num_windows": int(windows.shape[0]),
        "config": config.to_dict(),
        "bias_modules": list(config.bias_modules),
        **depth_meta,
        "attn_unit": config.attn_unit,
        "kept_counts": sel.counts,
        "wall_s": timer.wall_s,
    }
    strategy = Strategy(
        model=info,
        model_sha256=model_sha256,
        space=ShapeSpace(info.num_layers, config.min_layers, ffn_ladder, attn_ladder),
        keep_last=config.keep_last,
        allocation=config.allocation,
        depth={d: kept[d] for d in range(config.min_layers, info.num_layers + 1)},
        attn=sel.attn,
        ffn=sel.ffn,
        biases=sel.biases,
        meta=meta,
        attn_unit=config.attn_unit,
    )
    strategy.validate()
    return strategy


def _depth_meta(scores: dict[int, float], evaluations: int, scorer: ModelScorer) -> dict[str, Any]:
    return {
        "dp_scores": {str(d): _json_float(s) for d, s in scores.items()},
        "dp_perplexity": {str(d): math.exp(s) if s < 700 else None for d, s in scores.items()},
        "dp_evaluations": evaluations,
        "layer_forwards": {"cached": scorer.layer_forwards, "uncached": scorer.layer_forwards_uncached, "unit": "layer x sequence"},
    }


def _check_reusable(st: Strategy, info: ModelInfo, config: CalibrationConfig, tokens_sha: str) -> None:
    """``StrategyError`` unless ``st``'s depth DP was run on this model, depth range and calibration windows."""
    st.check_model(info)
    if (st.space.min_layers, st.keep_last) != (config.min_layers, config.keep_last):
        raise StrategyError(f"cannot reuse the depth of a strategy for depths {st.space.min_layers}..{st.space.max_layers} "
                            f"keep_last {st.keep_last}: this run asks for min_layers {config.min_layers}, keep_last {config.keep_last}")
    if st.meta.get("calib_tokens_sha256") != tokens_sha:
        raise StrategyError("cannot reuse the depth of a strategy calibrated on other tokens (calib_tokens_sha256 differs)")
