"""The measurement protocol, one code path for every engine.

For a list of shapes and one plugin:

1. pin the process (every thread) to ``settings.cpu_affinity`` (default: the last ``threads`` CPUs it may use) and
   record the CPUs; the plugin pins its own compute threads to ``settings.threads``;
2. ``prepare`` each shape once (artefacts shared by all its sessions);
3. ``passes`` separate passes, each of ``rounds`` interleaved rounds: every round measures every shape once, in
   an order rotated by one shape per round, so slow periods of the host spread over all shapes. One measurement
   = open a session, ``warmup`` untimed generations, ``repetitions`` timed ones (their median is the round
   value), close;
4. busy detection around every measurement (``CpuMonitor``: cores other processes used meanwhile); a contended
   measurement is repeated (``busy_retries``) instead of only being flagged; still contended → ``busy`` row, or
   ``MachineBusyError`` with ``busy_policy="refuse"``;
5. per shape: median of the round medians, p90 / std over all timed generations, the median absolute deviation
   of the round medians (spread) and each pass's median; per table: the test–retest noise floor (first vs second
   half of the passes: median |Δ| %, share within ±5 % / ±10 %).
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.spec import SubnetSpec
from profilers.base import MeasureSettings, Profiler
from profilers.errors import MachineBusyError, ProfilerUnavailable
from profilers.facts import CpuMonitor, is_busy
from profilers.stats import percentile
from profilers.table import FloorStat, NoiseFloor, ProfileRow, ProtocolFacts, Stat
from profilers.workload import Workload

#: ``on_progress(done, total, shape_key)`` after every measurement (``total`` = shapes × rounds × passes)
OnProgress = Callable[[int, int, str], None]


@dataclass
class RoundSample:
    """One measurement of one shape: the timed generations, their contention, memory and wall time."""

    ttft_ms: list[float]
    tpot_ms: list[float]
    contention: float
    busy: bool
    peak_mem_mb: float | None
    wall_s: float
    pass_index: int
    attempts: int = 1

    @property
    def ttft_median(self) -> float:
        return statistics.median(self.ttft_ms)

    @property
    def tpot_median(self) -> float:
        return statistics.median(self.tpot_ms)


@dataclass
class Measurement:
    """Rows (in the order of the shapes given), how they were measured and the noise floor (``None`` with 1 pass)."""

    rows: list[ProfileRow]
    protocol: ProtocolFacts
    noise_floor: NoiseFloor | None
    samples: dict[str, list[RoundSample]] = field(default_factory=dict)


# ---- CPU affinity ----------------------------------------------------------------------------------------------


def allowed_cpus() -> list[int]:
    """CPUs this process may run on (all CPUs where affinity is not supported)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def choose_affinity(settings: MeasureSettings) -> list[int]:
    """``settings.cpu_affinity`` (checked against the allowed CPUs), else the last ``threads`` allowed CPUs."""
    allowed = allowed_cpus()
    if settings.cpu_affinity is not None:
        bad = sorted(set(settings.cpu_affinity) - set(allowed))
        if bad:
            raise ConfigError(f"cpu_affinity {list(settings.cpu_affinity)}: CPU(s) {bad} are not available to this process (allowed: {allowed})")
        return sorted(set(settings.cpu_affinity))
    return allowed[-settings.threads:] if settings.threads <= len(allowed) else allowed


def _set_all_threads(cpus: Sequence[int]) -> None:
    """Pin every thread of this process (``sched_setaffinity`` on a pid only moves the calling thread)."""
    if not hasattr(os, "sched_setaffinity"):
        return
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, set(cpus))


@contextlib.contextmanager
def pinned(cpus: Sequence[int]) -> Iterator[list[int]]:
    """Pin the process to ``cpus`` for the block, restoring the previous affinity after; yields the CPUs in effect."""
    before = allowed_cpus()
    _set_all_threads(cpus)
    try:
        yield allowed_cpus() if hasattr(os, "sched_setaffinity") else list(cpus)
    finally:
        _set_all_threads(before)


# ---- statistics ----------------------------------------------------------------------------------------------


def mad_pct(values: Sequence[float]) -> float:
    """Median absolute deviation of ``values`` relative to their median, in % (0 for one value)."""
    m = statistics.median(values)
    return 100.0 * statistics.median(abs(v - m) for v in values) / m if m > 0 else 0.0


def robust_stat(samples: Sequence[RoundSample], which: str, passes: int) -> Stat:
    """Median of the round medians, p90 / std over every timed generation, spread and per-pass medians."""
    rounds = [s.ttft_median if which == "ttft_ms" else s.tpot_median for s in samples]
    allv = [v for s in samples for v in (s.ttft_ms if which == "ttft_ms" else s.tpot_ms)]
    med = statistics.median(rounds)
    mean = sum(allv) / len(allv)
    std = math.sqrt(sum((x - mean) ** 2 for x in allv) / len(allv))
    per_pass = [statistics.median([r for r, s in zip(rounds, samples, strict=True) if s.pass_index == p]) for p in range(passes)
                if any(s.pass_index == p for s in samples)]
    return Stat(median=med, p90=max(med, percentile(allv, 90)), std=std, repetitions=len(allv), rounds=len(rounds),
                mad_pct=round(mad_pct(rounds), 3), pass_medians=[round(v, 6) for v in per_pass] if passes > 1 else None)


def floor_of(deltas_pct: Sequence[float]) -> FloorStat:
    """Summary of per-shape test–retest differences (absolute, %)."""
    d = sorted(abs(x) for x in deltas_pct)
    return FloorStat(median_abs_delta_pct=round(statistics.median(d), 3), p90_abs_delta_pct=round(percentile(d, 90), 3),
                     within_5pct=round(sum(x <= 5 for x in d) / len(d), 4), within_10pct=round(sum(x <= 10 for x in d) / len(d), 4), n=len(d))


def retest_deltas(samples: dict[str, list[RoundSample]], passes: int, which: str) -> list[float]:
    """Per shape: 100·|A − B| / mean(A, B) with A, B the medians of the round medians of the first and second half of the passes."""
    half = passes // 2
    out = []
    for got in samples.values():
        vals = [(s.pass_index, s.ttft_median if which == "ttft_ms" else s.tpot_median) for s in got]
        a = [v for p, v in vals if p < half]
        b = [v for p, v in vals if p >= half]
        if a and b:
            ma, mb = statistics.median(a), statistics.median(b)
            out.append(100.0 * abs(ma - mb) / ((ma + mb) / 2))
    return out


def noise_floor(samples: dict[str, list[RoundSample]], passes: int) -> NoiseFloor | None:
    """The test–retest floor of a measurement with at least two passes (``None`` otherwise)."""
    if passes < 2:
        return None
    t, d = retest_deltas(samples, passes, "ttft_ms"), retest_deltas(samples, passes, "tpot_ms")
    if not t or not d:
        return None
    return NoiseFloor(ttft_ms=floor_of(t), tpot_ms=floor_of(d))


# ---- the protocol ----------------------------------------------------------------------------------------------


def _measure_once(profiler: Profiler, source: Any, spec: SubnetSpec, workload: Workload, prepared: Any,
                  settings: MeasureSettings, pass_index: int, cpus: Sequence[int]) -> RoundSample:
    """Open, warm up, time ``repetitions`` generations (contention monitored), close; re-measure while contended."""
    attempts = 0
    while True:
        attempts += 1
        t0 = time.perf_counter()
        with profiler.open(source, spec, workload, prepared) as sess:
            for _ in range(settings.warmup):
                sess.generate()
            mon = CpuMonitor(tuple(cpus))
            mon.start()
            ttft, tpot = [], []
            for _ in range(settings.repetitions):
                a, b = sess.generate()
                ttft.append(a)
                tpot.append(b)
            contention = mon.stop()
            mem = sess.peak_mem_mb()
        busy = is_busy(contention, settings.threads, settings.busy_tolerance, mon.on_ours)
        if not busy or attempts > settings.busy_retries:
            return RoundSample(ttft, tpot, contention, busy, mem, time.perf_counter() - t0, pass_index, attempts)


def measure_shapes(profiler: Profiler, source: Any, specs: Sequence[SubnetSpec], workload: Workload, *,
                   on_progress: OnProgress | None = None) -> Measurement:
    """Measure ``specs`` with ``profiler`` by the protocol of this module; rows come back in the order given."""
    reason = profiler.unavailable_reason()
    if reason is not None:
        raise ProfilerUnavailable(f"engine {profiler.name} unavailable: {reason}")
    profiler.check_workload(workload)
    specs = list(dict.fromkeys(specs))
    if not specs:
        raise ConfigError("no shapes to measure")
    for s in specs:
        source.check(s)
    st = profiler.settings
    cpus = choose_affinity(st)
    t_start = time.perf_counter()
    samples: dict[str, list[RoundSample]] = {s.key: [] for s in specs}
    prep_s: dict[str, float] = {}
    total, done = len(specs) * st.rounds * st.passes, 0
    with tempfile.TemporaryDirectory(prefix=f"amoeba-{profiler.name}-") as tmp, pinned(cpus) as in_effect:
        prepared: dict[str, Any] = {}
        for s in specs:
            t0 = time.perf_counter()
            d = Path(tmp) / s.key
            d.mkdir()
            prepared[s.key] = profiler.prepare(source, s, workload, d)
            prep_s[s.key] = time.perf_counter() - t0
        os.sync()  # the artefacts' dirty pages are written back now, not during the timed passes
        n = len(specs)
        for p in range(st.passes):
            for r in range(st.rounds):
                k = (p * st.rounds + r) % n
                for s in specs[k:] + specs[:k]:
                    sample = _measure_once(profiler, source, s, workload, prepared[s.key], st, p, in_effect)
                    if sample.busy and st.busy_policy == "refuse":
                        raise MachineBusyError(f"{profiler.name} {s.key}: other processes used {sample.contention:.2f} cores during the "
                                               f"measurement (only {st.busy_tolerance:+.2f} over the free cores is tolerated) after "
                                               f"{sample.attempts} attempt(s); retry on an idle machine")
                    samples[s.key].append(sample)
                    done += 1
                    if on_progress:
                        on_progress(done, total, s.key)
    rows = []
    for s in specs:
        got = samples[s.key]
        dims = profiler.dims(source, s)
        mems = [g.peak_mem_mb for g in got if g.peak_mem_mb is not None]
        rows.append(ProfileRow(
            shape=s.key, num_layers=s.num_layers, kv_groups=dims.kv_groups, ffn_channels=dims.ffn_channels, q_heads=dims.q_heads,
            ttft_ms=robust_stat(got, "ttft_ms", st.passes), tpot_ms=robust_stat(got, "tpot_ms", st.passes),
            peak_mem_mb=round(statistics.median(mems), 2) if mems else None,
            busy=any(g.busy for g in got), contention=round(max(g.contention for g in got), 3),
            measure_s=round(prep_s[s.key] + sum(g.wall_s for g in got), 3), remeasured=sum(g.attempts - 1 for g in got)))
    facts = ProtocolFacts(passes=st.passes, rounds_per_pass=st.rounds, warmup=st.warmup, repetitions=st.repetitions, threads=st.threads,
                          cpu_affinity=in_effect, busy_policy=st.busy_policy, busy_retries=st.busy_retries, busy_tolerance=st.busy_tolerance,
                          remeasured_rounds=sum(r.remeasured for r in rows), wall_s=round(time.perf_counter() - t_start, 3))
    return Measurement(rows, facts, noise_floor(samples, st.passes), samples)
