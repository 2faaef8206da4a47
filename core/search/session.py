"""Open a checkpoint's accuracy table: checkpoint + tokenizer + metric plugin + cache, wired together."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.data.paths import ACCURACY_CACHE
from core.errors import ConfigError
from core.search.accuracy import AccuracyCache, AccuracyTable
from core.search.metrics import MetricSettings, make_metric

if TYPE_CHECKING:
    from core.checkpoint import OpenedCheckpoint

DEFAULT_CACHE = ACCURACY_CACHE


@dataclass(frozen=True)
class AccuracySettings:
    """Which checkpoint, which metric (``ppl`` or ``mc:<task>``), where the cache lives."""

    checkpoint: Path
    metric: str = "ppl"
    cache: Path = DEFAULT_CACHE
    metric_settings: MetricSettings = field(default_factory=MetricSettings)


def default_calib_text(ckpt: OpenedCheckpoint) -> Path | None:
    """``calibration.txt`` in the checkpoint directory, else in its base model directory (as ``amoeba calibrate``)."""
    for d in (ckpt.path, ckpt.base_dir):
        if (Path(d) / "calibration.txt").is_file():
            return Path(d) / "calibration.txt"
    return None


def open_accuracy(settings: AccuracySettings, cache: AccuracyCache | None = None) -> tuple[OpenedCheckpoint, AccuracyTable]:
    """Load the checkpoint and build its ``AccuracyTable`` (JSON cache at ``settings.cache`` unless ``cache`` is given).

    The ``ppl`` metric reads ``metric_settings.calib_text``, defaulting to ``default_calib_text``.
    """
    from core.checkpoint import open_checkpoint
    from core.eval.target import load_tokenizer
    from core.search.cache import JsonAccuracyCache
    from core.search.shapes import activate

    ckpt = open_checkpoint(settings.checkpoint)
    if ckpt.tokenizer_dir is None:
        raise ConfigError(f"checkpoint {settings.checkpoint}: its base model {ckpt.base_dir} has no tokenizer files")
    tokenizer: Any = load_tokenizer(ckpt.tokenizer_dir)
    ms = settings.metric_settings
    if settings.metric.partition(":")[0] == "ppl" and ms.calib_text is None:
        calib = default_calib_text(ckpt)
        if calib is None:
            raise ConfigError(f"no calibration.txt in {ckpt.path} or {ckpt.base_dir}; pass --calib-text FILE")
        ms = MetricSettings(**{**ms.__dict__, "calib_text": calib})
    metric = make_metric(settings.metric, ms, tokenizer, ckpt.elastic.info.max_position_embeddings)
    elastic = ckpt.elastic
    store = cache if cache is not None else JsonAccuracyCache(settings.cache)
    table = AccuracyTable(elastic, lambda s: activate(elastic, s), ckpt.checkpoint_sha256, metric, store)
    return ckpt, table
