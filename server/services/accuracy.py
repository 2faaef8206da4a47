"""The service's accuracy table: ``core.search`` AccuracyTable over the loaded checkpoint + the SQL cache.

The metric is the calibration perplexity (``core.search.metrics``; accuracy = −ln ppl, higher is better).
Filling the table for the whole shape space is the ``accuracy`` job, run by a worker outside requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from core.errors import DataMissingError
from core.search.accuracy import AccuracyKey, AccuracyMetric, AccuracyRecord, AccuracyTable
from core.search.pipeline import AccuracyPending
from core.search.shapes import Shape, UniformSpace, activate
from core.spec import ShapeSpace
from server.db.session import Database
from server.runtime import Runtime
from server.services.accuracy_cache import SqlAccuracyCache
from server.settings import Settings

ACCURACY = "accuracy"
#: the accuracy table a checkpoint may ship (a JSON accuracy cache): a cold start seeds the SQL cache from it
ACCURACY_TABLE_FILE = "accuracy.json"
MetricFactory = Callable[[Any], AccuracyMetric]
"""Builds the metric for an opened checkpoint (tests inject one over a fixed token stream)."""


def calibration_text(settings: Settings, ckpt: Any) -> Path:
    """``AMOEBA_CALIB_TEXT``; else ``calibration.txt`` of the checkpoint or its base (as ``amoeba calibrate``);
    else the corpus calibration split, prepared once under the var dir from the shared data."""
    from core.search.session import default_calib_text

    if settings.calib_text is not None:
        if not settings.calib_text.is_file():
            raise DataMissingError(f"calibration text not found: {settings.calib_text} (AMOEBA_CALIB_TEXT)")
        return settings.calib_text
    found = default_calib_text(ckpt)
    if found is not None:
        return found
    prepared = settings.resolved_var_dir() / "corpus" / "calibration.txt"
    if prepared.is_file():
        return prepared
    from core.data.corpus import prepare_corpus
    from core.data.paths import data_dir

    src = data_dir() / "corpus" / "gutenberg"
    if not src.is_dir():
        raise DataMissingError(f"no calibration text: set AMOEBA_CALIB_TEXT or provide the corpus at {src} (AMOEBA_DATA_DIR)")
    prepare_corpus(src, prepared.parent)
    return prepared


def default_metric_factory(settings: Settings) -> MetricFactory:
    """Calibration perplexity with the checkpoint's tokenizer (window / windows from settings)."""

    def factory(ckpt: Any) -> AccuracyMetric:
        from core.eval.target import load_tokenizer
        from core.search.metrics import MetricSettings, make_metric

        if ckpt.tokenizer_dir is None:
            raise DataMissingError(f"checkpoint {settings.checkpoint_path()} has no tokenizer: the ppl metric needs one")
        ms = MetricSettings(window=settings.calib_window, max_windows=settings.calib_max_windows, calib_text=calibration_text(settings, ckpt))
        return make_metric("ppl", ms, load_tokenizer(ckpt.tokenizer_dir), ckpt.elastic.info.max_position_embeddings)

    return factory


class CachedAccuracy:
    """An ``AccuracyProvider`` over the SQL cache alone: requests read accuracies in bulk and never evaluate."""

    def __init__(self, cache: SqlAccuracyCache, checkpoint_sha256: str, metric: AccuracyMetric) -> None:
        self.cache, self.checkpoint_sha256, self.metric = cache, checkpoint_sha256, metric

    def key(self, shape: Shape) -> AccuracyKey:
        return AccuracyKey(self.checkpoint_sha256, shape.key, self.metric.name, self.metric.data_sha256)

    def snapshot(self, shapes: Iterable[Shape]) -> dict[str, AccuracyRecord]:
        keys = {self.key(s): s.key for s in shapes}
        return {keys[k]: r for k, r in self.cache.get_many(list(keys)).items()}

    def record(self, shape: Shape) -> AccuracyRecord:
        raise AccuracyPending(1, 1)


class AccuracyService:
    """Accuracy of the checkpoint's shapes, cached in SQL; evaluations hold the runtime's model lock."""

    def __init__(self, runtime: Runtime, db: Database, metric_factory: MetricFactory) -> None:
        self.runtime = runtime
        self.cache = SqlAccuracyCache(db)
        self._factory = metric_factory
        self._metric: AccuracyMetric | None = None
        self._complete = False
        self._init_lock = threading.Lock()

    @property
    def lock(self) -> threading.RLock:
        return self.runtime.lock

    @property
    def space(self) -> ShapeSpace:
        return self.runtime.space

    @property
    def checkpoint_sha256(self) -> str:
        return self.runtime.sha256

    def metric(self) -> AccuracyMetric:
        with self._init_lock:
            if self._metric is None:
                self._metric = self._factory(self.runtime.checkpoint())
            return self._metric

    def cached(self) -> CachedAccuracy:
        """The request-path provider (no model, no evaluation)."""
        return CachedAccuracy(self.cache, self.checkpoint_sha256, self.metric())

    def identity(self) -> tuple[str, str, str]:
        """(checkpoint sha256, metric name, metric data sha256): what an accuracy value depends on."""
        m = self.metric()
        return self.checkpoint_sha256, m.name, m.data_sha256

    def table(self) -> AccuracyTable:
        ckpt = self.runtime.checkpoint()
        elastic = ckpt.elastic
        return AccuracyTable(elastic, lambda shape: activate(elastic, shape), self.checkpoint_sha256, self.metric(), self.cache)

    def job_key(self) -> str:
        m = self.metric()
        return f"{ACCURACY}:{self.checkpoint_sha256[:16]}:{m.name}:{m.data_sha256[:16]}"

    def missing(self) -> int:
        """Shapes of the space without a cached accuracy (one bulk read; loads no model weights beyond the metric's needs)."""
        space = UniformSpace(self.space)
        return len(space) - len(self.cached().snapshot(space))

    def complete(self) -> bool:
        """Every shape of the space has a cached accuracy (sticky once true: entries are never deleted)."""
        if not self._complete:
            self._complete = self.missing() == 0
        return self._complete

    def seed(self, table_file: Path) -> int:
        """Copy the entries of a shipped accuracy table (a JSON accuracy cache, e.g. ``<checkpoint>/accuracy.json``)
        that belong to this checkpoint, metric and metric data into the SQL cache. Returns how many were added.

        Entries for another checkpoint or other evaluation data are ignored (their keys say so); a missing file
        adds nothing.
        """
        from core.search.cache import JsonAccuracyCache

        if not Path(table_file).is_file():
            return 0
        ckpt, metric, data = self.identity()
        shipped = JsonAccuracyCache(table_file)
        keys = [self.cached().key(shape) for shape in UniformSpace(self.space)]
        found = shipped.get_many(keys)
        known = self.cache.get_many(list(found))
        added = 0
        for key, record in found.items():
            if key not in known and (key.checkpoint_sha256, key.metric, key.data_sha256) == (ckpt, metric, data):
                self.cache.put(key, record)
                added += 1
        self._complete = False
        return added

    def fill(self, on_step: Callable[[int, int], None] | None = None) -> int:
        """Evaluate every shape of the space that has no cached accuracy. Returns how many were evaluated."""
        table = self.table()
        todo = table.missing(UniformSpace(self.space))
        for i, shape in enumerate(todo):
            with self.lock:
                table.record(shape)
            if on_step is not None:
                on_step(i + 1, len(todo))
        return len(todo)


def warm_accuracy(app: Any) -> int:
    """Seed the accuracy table from the one the checkpoint ships, then queue whatever is still missing so the first
    search does not wait for it. Returns the number of shapes taken from the shipped table."""
    from server.services import jobs

    state = app.state.amoeba
    shipped: int = state.accuracy.seed(state.runtime.path / ACCURACY_TABLE_FILE)
    if not state.accuracy.complete():
        with state.db.session() as s:
            jobs.enqueue(s, ACCURACY, state.accuracy.job_key(), {}, rearm=True)
    return shipped
