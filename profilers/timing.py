"""The shared timing protocol: warm-up, timed repetitions of prefill + KV-cached decode, contention check.

TTFT of one repetition = prefill of the prompt up to the first sampled token; TPOT = the remaining
``gen_len - 1`` cached decode steps divided by their count. Each statistic is over repetitions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from profilers.base import MeasureSettings
from profilers.errors import MachineBusyError
from profilers.facts import CpuMonitor, is_busy, reset_peak_rss, rss_mb, trim_heap
from profilers.stats import summarise
from profilers.table import Stat
from profilers.workload import Workload


class Runner(Protocol):
    """An engine session for one shape: prefill returns the cache state, decode advances it by one token."""

    def prefill(self) -> Any: ...

    def decode(self, state: Any) -> Any: ...

    def sync(self) -> None:
        """Wait for queued device work (no-op on CPU)."""
        ...


@dataclass
class Timing:
    ttft_ms: Stat
    tpot_ms: Stat
    busy: bool
    contention: float


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


def time_generations(generate: Callable[[], tuple[float, float]], settings: MeasureSettings, *, what: str = "shape") -> Timing:
    """Call ``generate() -> (ttft_ms, tpot_ms)`` for warm-up and timed repetitions; when other processes competed
    for the CPU, re-measure up to ``busy_retries`` times, then mark the result busy or refuse (``busy_policy``)."""
    busy, contention = False, 0.0
    ttft: list[float] = []
    tpot: list[float] = []
    for _attempt in range(settings.busy_retries + 1):
        for _ in range(settings.warmup):
            generate()
        mon = CpuMonitor()
        mon.start()
        ttft, tpot = [], []
        for _ in range(settings.repetitions):
            a, b = generate()
            ttft.append(a)
            tpot.append(b)
        contention = mon.stop()
        busy = is_busy(contention, settings.threads, settings.busy_tolerance)
        if not busy:
            break
    if busy and settings.busy_policy == "refuse":
        raise MachineBusyError(f"{what}: other processes used {contention:.2f} cores during the measurement "
                               f"(only {settings.busy_tolerance:+.2f} over the free cores is tolerated); retry on an idle machine")
    return Timing(summarise(ttft), summarise(tpot), busy, contention)


def time_runner(runner: Runner, workload: Workload, settings: MeasureSettings, *, what: str = "shape") -> Timing:
    """``time_generations`` over our own prefill + KV-cached decode loop of ``runner``."""
    return time_generations(lambda: one_generation(runner, workload.gen_len), settings, what=what)
