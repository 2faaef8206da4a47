"""Summary statistics of repeated timings (pure Python)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from core.errors import ConfigError
from profilers.table import Stat


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] (numpy's default method)."""
    if not values:
        raise ConfigError("percentile of an empty sample")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarise(samples_ms: Sequence[float]) -> Stat:
    """Median, p90, std (population) and count of timings in milliseconds."""
    if not samples_ms:
        raise ConfigError("no timing samples to summarise")
    n = len(samples_ms)
    mean = sum(samples_ms) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in samples_ms) / n)
    return Stat(median=percentile(samples_ms, 50), p90=percentile(samples_ms, 90), std=std, repetitions=n)
