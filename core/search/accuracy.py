"""The accuracy table: a shape's calibration metric on one checkpoint, computed on demand and cached.

Accuracy is **higher-is-better** (perplexity is stored as ``accuracy = -ln(ppl)``, ``raw = ppl``).
A cache entry is identified by checkpoint hash + shape key + metric name + evaluation-data hash, so a new
checkpoint, another metric or other calibration data never reuses a stale value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from core.errors import ConfigError
from core.eval.perplexity import LogitsFn

if TYPE_CHECKING:
    from core.search.shapes import Shape


@dataclass(frozen=True)
class AccuracyKey:
    """Identity of one cached accuracy."""

    checkpoint_sha256: str
    shape: str
    metric: str
    data_sha256: str

    def __post_init__(self) -> None:
        for name in ("checkpoint_sha256", "shape", "metric", "data_sha256"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v or "|" in v:
                raise ConfigError(f"accuracy key field {name} must be a non-empty string without '|', got {v!r}")

    @property
    def text(self) -> str:
        """Flat string form ``checkpoint|metric|data|shape`` (used as a JSON/SQL key)."""
        return f"{self.checkpoint_sha256}|{self.metric}|{self.data_sha256}|{self.shape}"

    @classmethod
    def parse(cls, text: str) -> AccuracyKey:
        parts = text.split("|")
        if len(parts) != 4:
            raise ConfigError(f"bad accuracy key {text!r}: expected 'checkpoint|metric|data|shape'")
        return cls(checkpoint_sha256=parts[0], metric=parts[1], data_sha256=parts[2], shape=parts[3])


@dataclass(frozen=True)
class AccuracyRecord:
    """One measured accuracy: ``accuracy`` is higher-is-better; ``raw`` is the metric's native value."""

    accuracy: float
    raw: float
    raw_name: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not math.isfinite(self.accuracy):
            raise ConfigError(f"accuracy must be finite, got {self.accuracy}")

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "raw": self.raw, "raw_name": self.raw_name, "detail": dict(self.detail)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AccuracyRecord:
        try:
            return cls(float(d["accuracy"]), float(d["raw"]), str(d["raw_name"]), dict(d.get("detail") or {}))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"bad accuracy record {dict(d)!r}: {type(e).__name__}: {e}") from None


class AccuracyCache(Protocol):
    """Where accuracies are kept. The JSON file implementation is in ``core.search.cache``; the service has SQL."""

    def get(self, key: AccuracyKey) -> AccuracyRecord | None:
        """The cached record, or ``None``."""
        ...

    def put(self, key: AccuracyKey, record: AccuracyRecord) -> None:
        """Store (or overwrite) one record durably."""
        ...


class AccuracyMetric(Protocol):
    """A calibration metric plugin (see ``core.search.metrics``)."""

    @property
    def name(self) -> str:
        """Metric name in cache keys, e.g. ``ppl`` or ``mc:piqa:acc_norm``."""
        ...

    @property
    def data_sha256(self) -> str:
        """Identity of the evaluation data *and* settings (window, limits ...)."""
        ...

    def evaluate(self, logits_fn: LogitsFn, on_progress: Callable[[int, int], None] | None = None) -> AccuracyRecord:
        """Evaluate the currently active model."""
        ...


class AccuracySource(Protocol):
    """What search needs: an accuracy per shape (possibly expensive) and what is already known (free)."""

    @property
    def evaluations(self) -> int:
        """Number of real (uncached) evaluations made so far."""
        ...

    def accuracy(self, shape: Shape) -> float:
        """Higher-is-better accuracy of ``shape`` (computes it when unknown)."""
        ...

    def known(self, shape: Shape) -> float | None:
        """Accuracy of ``shape`` if it is available without evaluating, else ``None``."""
        ...


class FunctionAccuracy:
    """An ``AccuracySource`` from a plain function (synthetic scores, tests); memoised, counts evaluations."""

    def __init__(self, fn: Callable[[Shape], float]) -> None:
        self._fn = fn
        self._memo: dict[str, float] = {}
        self._evaluations = 0

    @property
    def evaluations(self) -> int:
        return self._evaluations

    def accuracy(self, shape: Shape) -> float:
        if shape.key not in self._memo:
            self._memo[shape.key] = float(self._fn(shape))
            self._evaluations += 1
        return self._memo[shape.key]

    def known(self, shape: Shape) -> float | None:
        return self._memo.get(shape.key)


class AccuracyTable:
    """Accuracy of shapes of one checkpoint under one metric, backed by a cache (an ``AccuracySource``).

    ``activate(shape)`` switches the model to ``shape`` (e.g. ``ElasticModel.set_shape``); ``logits_fn``
    then evaluates the active shape.
    """

    def __init__(self, logits_fn: LogitsFn, activate: Callable[[Shape], object], checkpoint_sha256: str, metric: AccuracyMetric, cache: AccuracyCache) -> None:
        self.logits_fn = logits_fn
        self.activate = activate
        self.checkpoint_sha256 = checkpoint_sha256
        self.metric = metric
        self.cache = cache
        self._evaluations = 0

    @property
    def evaluations(self) -> int:
        return self._evaluations

    def key(self, shape: Shape) -> AccuracyKey:
        return AccuracyKey(self.checkpoint_sha256, shape.key, self.metric.name, self.metric.data_sha256)

    def cached(self, shape: Shape) -> AccuracyRecord | None:
        """The cached record of ``shape`` (no evaluation)."""
        return self.cache.get(self.key(shape))

    def record(self, shape: Shape, on_progress: Callable[[int, int], None] | None = None) -> AccuracyRecord:
        """The record of ``shape``: from the cache, else evaluated now and stored."""
        key = self.key(shape)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        self.activate(shape)
        with torch.inference_mode():
            rec = self.metric.evaluate(self.logits_fn, on_progress)
        self.cache.put(key, rec)
        self._evaluations += 1
        return rec

    def accuracy(self, shape: Shape) -> float:
        return self.record(shape).accuracy

    def known(self, shape: Shape) -> float | None:
        hit = self.cached(shape)
        return None if hit is None else hit.accuracy

    def snapshot(self, shapes: Iterable[Shape]) -> dict[str, AccuracyRecord]:
        """Every cached record among ``shapes`` by shape key: one bulk read when the cache has ``get_many``."""
        keys = {self.key(s): s.key for s in shapes}
        bulk = getattr(self.cache, "get_many", None)
        if bulk is not None:
            return {keys[k]: r for k, r in bulk(list(keys)).items()}
        return {name: r for k, name in keys.items() if (r := self.cache.get(k)) is not None}

    def missing(self, shapes: Iterable[Shape]) -> list[Shape]:
        """The shapes among ``shapes`` that have no cached record yet."""
        return [s for s in shapes if self.cached(s) is None]
