"""Accuracy metric plugins (higher is better): perplexity on a calibration stream, or a multiple-choice score.

``ppl``: ``accuracy = -ln(ppl)`` = minus the mean next-token NLL (nats); ``raw`` = ppl.
``mc:<task>``: ``accuracy`` = the task's ``acc_norm`` (or ``acc`` / ``macro_acc``), a fraction in [0, 1].
Factories are registered by name (``METRIC_FACTORIES``, in the torch-free ``core.search.registries``) and imported
lazily (``make_metric``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from core.errors import ConfigError
from core.eval.perplexity import LogitsFn
from core.search.accuracy import AccuracyMetric, AccuracyRecord
from core.search.config import MC_SCORES, MetricSettings
from core.search.registries import METRIC_FACTORIES


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()


class PerplexityMetric:
    """Perplexity of one token stream over non-overlapping windows (``core.eval.perplexity``)."""

    name = "ppl"

    def __init__(self, ids: torch.Tensor, window: int, *, batch_size: int = 4, max_windows: int | None = None) -> None:
        if ids.dim() != 1 or ids.numel() < window:
            raise ConfigError(f"calibration stream of {ids.numel()} tokens is shorter than one window of {window}")
        self.ids, self.window, self.batch_size, self.max_windows = ids.long(), window, batch_size, max_windows
        params = json.dumps({"window": window, "max_windows": max_windows}, sort_keys=True).encode()
        self._sha = _sha(self.ids.numpy().tobytes(), params)

    @property
    def data_sha256(self) -> str:
        return self._sha

    def evaluate(self, logits_fn: LogitsFn, on_progress: Callable[[int, int], None] | None = None) -> AccuracyRecord:
        from core.eval.perplexity import perplexity_from_ids

        r = perplexity_from_ids(logits_fn, self.ids, self.window, batch_size=self.batch_size, max_windows=self.max_windows, on_progress=on_progress)
        detail = {"nll": r.nll, "tokens_scored": r.tokens_scored, "windows": r.windows, "window_len": r.window_len}
        return AccuracyRecord(accuracy=-r.nll, raw=r.ppl, raw_name="ppl", detail=detail)


class MultipleChoiceMetric:
    """A multiple-choice task scored by log-likelihood (``core.eval.multiple_choice``); accuracy = ``score``."""

    def __init__(self, task: str, items: Sequence[Any], tokenizer: Any, max_len: int, *, score: str = "acc_norm", batch_size: int = 8) -> None:
        if score not in MC_SCORES:
            raise ConfigError(f"multiple-choice score must be one of {', '.join(MC_SCORES)}, got {score!r}")
        if not items:
            raise ConfigError(f"{task}: no items to evaluate")
        self.task, self.items, self.tokenizer, self.max_len, self.score, self.batch_size = task, list(items), tokenizer, max_len, score, batch_size
        rows = json.dumps([asdict(it) for it in self.items], sort_keys=True).encode()
        self._sha = _sha(rows, json.dumps({"max_len": max_len, "vocab": len(tokenizer)}).encode())

    @property
    def name(self) -> str:
        return f"mc:{self.task}:{self.score}"

    @property
    def data_sha256(self) -> str:
        return self._sha

    def evaluate(self, logits_fn: LogitsFn, on_progress: Callable[[int, int], None] | None = None) -> AccuracyRecord:
        from core.eval.multiple_choice import evaluate_items

        r = evaluate_items(self.task, logits_fn, self.tokenizer, self.items, self.max_len, batch_size=self.batch_size, on_progress=on_progress)
        value = r.macro_acc if self.score == "macro_acc" else getattr(r, self.score)
        if value is None:
            raise ConfigError(f"{self.task}: items carry no subjects, so macro_acc is undefined; use acc or acc_norm")
        detail = {"n": r.n, "acc": r.acc, "acc_norm": r.acc_norm, "chance": r.chance}
        return AccuracyRecord(accuracy=float(value), raw=float(value), raw_name=self.score, detail=detail)


def make_metric(spec: str, settings: MetricSettings, tokenizer: Any, max_len: int) -> AccuracyMetric:
    """``ppl`` or ``mc:<task>`` → the metric plugin (``ConfigError`` for unknown names or missing inputs)."""
    name, _, arg = spec.partition(":")
    metric: AccuracyMetric = METRIC_FACTORIES.load(name)(arg, settings, tokenizer, max_len)
    return metric


def ppl_metric(arg: str, s: MetricSettings, tokenizer: Any, max_len: int) -> PerplexityMetric:
    """Perplexity of ``s.calib_text`` tokenised as one stream, window capped by the model context."""
    from core.eval.perplexity import context_window, tokenize_stream

    if arg:
        raise ConfigError(f"metric 'ppl' takes no argument, got 'ppl:{arg}'")
    if s.calib_text is None:
        raise ConfigError("the ppl metric needs a calibration text file (--calib-text)")
    path = Path(s.calib_text)
    if not path.is_file():
        raise ConfigError(f"calibration text not found: {path}")
    ids = tokenize_stream(tokenizer, path.read_text(encoding="utf-8"))
    return PerplexityMetric(ids, context_window(s.window, max_len), batch_size=s.batch_size, max_windows=s.max_windows)


def mc_metric(arg: str, s: MetricSettings, tokenizer: Any, max_len: int) -> MultipleChoiceMetric:
    """Multiple-choice task ``arg`` from the shared data directory (``--limit`` items, seeded subset if ``seed``)."""
    from core.data.paths import data_dir
    from core.eval.tasks import load_task, select_items

    if not arg:
        raise ConfigError("the multiple-choice metric needs a task, e.g. 'mc:piqa'")
    items = select_items(load_task(arg, data_dir(s.data_dir)), s.limit, s.seed)
    return MultipleChoiceMetric(arg, items, tokenizer, max_len, score=s.mc_score, batch_size=s.batch_size)
