"""Baselines as selectable strategies: a lazy registry ``name → builder`` and ``build_baseline_strategy``.

Every builder returns a ``Strategy`` (the same data as Stage 1), so a baseline plugs into ``ElasticModel``,
export, evaluation and profiling unchanged. Depth methods give depths ``[min_layers, L]`` at width 1; width
methods give their width ladder at full depth. ``strategy.meta["method"]`` names the method.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from transformers import PreTrainedModel

from core.baselines.config import BaselineConfig
from core.elastic.model import ElasticModel
from core.errors import ConfigError, StrategyError
from core.model.loader import ModelInfo
from core.registry import Registry
from core.spec import SubnetSpec
from core.strategy.calibrate import calibration_windows
from core.strategy.schema import Strategy

Kind = Literal["depth", "width"]


class Builder(Protocol):
    """``(elastic model at full shape, info, weights sha256, calibration windows [W, T], config) → Strategy``."""

    def __call__(self, model: ElasticModel, info: ModelInfo, sha256: str, windows: torch.Tensor, config: BaselineConfig) -> Strategy: ...


@dataclass(frozen=True)
class BaselineSpec:
    """A registered method: where its builder lives, what it prunes, and the work it reproduces."""

    name: str
    target: str
    kind: Kind
    reference: str


BASELINES: dict[str, BaselineSpec] = {
    b.name: b
    for b in (
        BaselineSpec("dp", "core.baselines.reference:dp_depth", "depth", "AmoebaLLM Stage 1 depth DP (Fu et al. 2024, arXiv 2411.10606)"),
        BaselineSpec("drop-last", "core.baselines.reference:drop_last", "depth", "keep the first d layers (reference)"),
        BaselineSpec("ppl-block", "core.baselines.block_ppl:ppl_block", "depth", "Shortened LLaMA, PPL criterion (Kim et al. 2024, arXiv 2402.02834)"),
        BaselineSpec("taylor-block", "core.baselines.block_taylor:taylor_block", "depth", "Shortened LLaMA, Taylor+ (Kim et al. 2024, arXiv 2402.02834)"),
        BaselineSpec("angular", "core.baselines.angular:angular_block", "depth",
                     "The Unreasonable Ineffectiveness of the Deeper Layers (Gromov et al. 2024, arXiv 2403.17887)"),
        BaselineSpec("flap", "core.baselines.flap:flap_width", "width", "FLAP (An et al. 2024, arXiv 2312.11983), uniform allocation"),
        BaselineSpec("llm-pruner", "core.baselines.llm_pruner:llm_pruner_width", "width",
                     "LLM-Pruner (Ma et al. 2023, arXiv 2305.11627), channel-wise Taylor, uniform ratio"),
        BaselineSpec("magnitude", "core.baselines.magnitude:magnitude_width", "width", "uniform L2-magnitude width pruning (reference)"),
    )
}


#: the lazy builder registry (``Registry[Builder]``): the same ``names()`` / ``load()`` as every plugin family
BUILDERS: Registry[Builder] = Registry("baseline", {n: b.target for n, b in BASELINES.items()}, callable)


def baseline_names(kind: Kind | None = None) -> list[str]:
    """Registered method names (nothing is imported), optionally only depth or width methods."""
    return [n for n, b in BASELINES.items() if kind is None or b.kind == kind]


def baseline_spec(name: str) -> BaselineSpec:
    BUILDERS.target(name)  # ConfigError listing the known names
    return BASELINES[name]


def build_baseline_strategy(
    name: str,
    model: PreTrainedModel | ElasticModel,
    info: ModelInfo,
    sha256: str,
    calib_tokens: np.ndarray | torch.Tensor | Sequence[int],
    config: BaselineConfig,
) -> Strategy:
    """Run baseline ``name`` on ``model`` (an HF model is wrapped in place) and return its validated ``Strategy``.

    Calibration windows come from ``calib_tokens`` exactly as Stage 1 takes them. The model is used dense; an
    ``ElasticModel``'s active shape and train/eval mode are restored. ``meta`` records method, kind, reference,
    config, the calibration tokens' sha256 and the wall time.
    """
    spec = baseline_spec(name)
    if spec.kind == "width" and len(config.widths) < 2:
        raise ConfigError(f"{name} is a width method: give a width ladder with widths below 1 (got {list(config.widths)})")
    builder = BUILDERS.load(name)
    em = model if isinstance(model, ElasticModel) else ElasticModel(model)
    if em.info != info:
        raise StrategyError("the given ModelInfo does not describe the given model")
    if config.window > info.max_position_embeddings:
        raise ConfigError(f"window {config.window} exceeds the model's max_position_embeddings {info.max_position_embeddings}")
    windows = calibration_windows(calib_tokens, config.window, config.max_tokens, config.num_windows)
    if int(windows.max()) >= info.vocab_size:
        raise ConfigError(f"calibration token id {int(windows.max())} is outside the model's vocabulary ({info.vocab_size}): wrong tokenizer?")
    prev_spec, was_training = em.spec, em.training
    t0 = time.perf_counter()
    try:
        em.eval()
        em.set_shape(SubnetSpec(info.num_layers, 1.0, 1.0))
        strategy = builder(em, info, sha256, windows, config)
    finally:
        em.set_shape(prev_spec)
        em.train(was_training)
    strategy.meta = {
        "method": name,
        "kind": spec.kind,
        "reference": spec.reference,
        "config": config.to_dict(),
        "calib_tokens_sha256": hashlib.sha256(windows.numpy().tobytes()).hexdigest(),
        "tokens_used": int(windows.numel()),
        "num_windows": int(windows.shape[0]),
        "wall_s": round(time.perf_counter() - t0, 3),
        **strategy.meta,
    }
    strategy.validate()
    return strategy


def dp_from_stage1(stage1: Strategy, info: ModelInfo, sha256: str, calib_tokens: np.ndarray | torch.Tensor | Sequence[int],
                   config: BaselineConfig) -> Strategy:
    """The ``dp`` baseline taken from a finished Stage 1 strategy instead of rerunning the DP.

    Stage 1's depth DP is exactly ``dp`` (same DP, metric and ``keep_last``), so its depth table is reused when it
    was made for these weights on exactly these calibration windows (``calib_tokens_sha256``) and reaches
    ``config.min_layers``. Raises ``StrategyError`` naming the mismatch otherwise. The result is depth-only (width
    1, no biases), with the DP's recorded scores and wall time in ``meta``.
    """
    from core.baselines.build import depth_only_strategy

    windows = calibration_windows(calib_tokens, config.window, config.max_tokens, config.num_windows)
    tokens_sha = hashlib.sha256(windows.numpy().tobytes()).hexdigest()
    if stage1.model_sha256 != sha256 or stage1.model != info:
        raise StrategyError("dp: the Stage 1 strategy was made for other base weights")
    if stage1.meta.get("calib_tokens_sha256") != tokens_sha:
        raise StrategyError(f"dp: the Stage 1 strategy was calibrated on other tokens than these {windows.shape[0]} windows of "
                            f"{windows.shape[1]} (calib_tokens_sha256 differs)")
    expected_keep_last = 1 if config.protect_last is None else config.protect_last
    if config.protect_first or stage1.keep_last != expected_keep_last:
        raise StrategyError(f"dp: the Stage 1 strategy keeps the last {stage1.keep_last} layer(s); this config asks for "
                            f"keep_last={expected_keep_last}, protect_first={config.protect_first}")
    if stage1.space.min_layers > config.min_layers:
        raise StrategyError(f"dp: the Stage 1 strategy goes down to {stage1.space.min_layers} layers, min_layers is {config.min_layers}")
    keys = ("dp_scores", "dp_perplexity", "dp_evaluations", "layer_forwards")
    depth_meta = stage1.meta.get("depth_reused_from") or {}
    wall = depth_meta.get("wall_s", stage1.meta.get("wall_s"))
    wall = wall.get("depth") if isinstance(wall, dict) else wall  # Stage 1 records {stats, width, depth, total}
    st = depth_only_strategy(info, sha256, {d: stage1.depth[d] for d in range(config.min_layers, info.num_layers + 1)}, config.min_layers,
                             keep_last=stage1.keep_last, meta={k: stage1.meta[k] for k in keys if k in stage1.meta})
    st.meta = {"method": "dp", "kind": "depth", "reference": BASELINES["dp"].reference, "config": config.to_dict(),
               "calib_tokens_sha256": tokens_sha, "tokens_used": int(windows.numel()), "num_windows": int(windows.shape[0]),
               "wall_s": wall, "reused_from_stage1": True, **st.meta, "keep_last": stage1.keep_last}
    return st
