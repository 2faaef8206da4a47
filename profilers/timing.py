"""Timing one generation: our own prefill + KV-cached decode loop over a ``Runner``, and peak RSS per shape.

TTFT of one generation = prefill of the prompt up to the first sampled token; TPOT = the remaining
``gen_len - 1`` cached decode steps divided by their count. Warm-up, rounds, statistics and busy handling
are ``profilers.protocol``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from profilers.facts import reset_peak_rss, rss_mb, trim_heap


class Runner(Protocol):
    """An engine session for one shape: prefill returns the cache state, decode advances it by one token."""

    def prefill(self) -> Any: ...

    def decode(self, state: Any) -> Any: ...

    def sync(self) -> None:
        """Wait for queued device work (no-op on CPU)."""
        ...


class RssProbe:
    """Peak resident memory of one shape relative to the process before it was built (Linux ``VmHWM``).

    Call ``rearm()`` once the shape is built so build-time temporaries do not count.
    """

    def __init__(self) -> None:
        trim_heap()
        self.base = rss_mb()
        self.ok = reset_peak_rss() and self.base is not None

    def rearm(self) -> None:
        """Forget build-time peaks (temporaries already freed): from here the peak is the running shape's."""
        trim_heap()
        self.ok = self.ok and reset_peak_rss()

    def peak_mb(self) -> float | None:
        peak = rss_mb("VmHWM")
        if not self.ok or peak is None or self.base is None:
            return None
        return round(max(0.0, peak - self.base), 2)


def one_generation(runner: Runner, gen_len: int) -> tuple[float, float]:
    """(ttft_ms, tpot_ms) of one prefill + ``gen_len - 1`` decode steps."""
    t0 = time.perf_counter()
    state = runner.prefill()
    runner.sync()
    t1 = time.perf_counter()
    for _ in range(gen_len - 1):
        state = runner.decode(state)
    runner.sync()
    t2 = time.perf_counter()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3 / (gen_len - 1)


def cuda_event_generation(runner: Runner, gen_len: int, cuda: Any) -> tuple[float, float]:
    """``one_generation`` timed on the device with CUDA events (``cuda`` is ``torch.cuda``).

    Events are recorded on the current stream before the prefill, after it and after the last decode step, and
    read after one synchronize at the end, so host-side timer and launch jitter do not enter the numbers and the
    decode loop is not serialised by per-step syncs (greedy tokens stay on the device).
    """
    start, mid, end = (cuda.Event(enable_timing=True) for _ in range(3))
    runner.sync()
    start.record()
    state = runner.prefill()
    mid.record()
    for _ in range(gen_len - 1):
        state = runner.decode(state)
    end.record()
    end.synchronize()
    return float(start.elapsed_time(mid)), float(mid.elapsed_time(end)) / (gen_len - 1)


@dataclass
class FnSession:
    """A ``profilers.base.Session`` from two callables (engines that time themselves, e.g. from reported metrics)."""

    gen: Callable[[], tuple[float, float]]
    mem: Callable[[], float | None]

    def generate(self) -> tuple[float, float]:
        return self.gen()

    def peak_mem_mb(self) -> float | None:
        return self.mem()
