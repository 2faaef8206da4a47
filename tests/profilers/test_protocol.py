"""The measurement protocol (``profilers.protocol``) on a scripted plugin: rounds, passes, order, statistic, floor, busy."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from core.errors import ConfigError
from core.spec import SubnetSpec
from profilers.base import MeasureSettings, Profiler, Session
from profilers.errors import MachineBusyError
from profilers.facts import CpuMonitor, FactsRecorder, is_busy
from profilers.protocol import allowed_cpus, choose_affinity, mad_pct, measure_shapes, pinned
from profilers.source import ModelSource
from profilers.table import EngineFacts, parse_table
from profilers.timing import FnSession, one_generation
from profilers.workload import Workload

WL = Workload(1, 4, 5)


class Scripted(Profiler):
    """Returns ``value(spec, n)`` for the n-th generation of a shape; records every open and prepare."""

    name = "scripted"

    def __init__(self, settings: MeasureSettings | None = None, value: Any = None) -> None:
        super().__init__(settings)
        self.opens: list[str] = []
        self.prepared: list[str] = []
        self.count: dict[str, int] = {}
        self.value = value or (lambda spec, n: (10.0 * spec.num_layers, float(spec.num_layers)))

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    def engine_facts(self, workload: Workload) -> EngineFacts:
        return EngineFacts(name=self.name, version="0", dtype=workload.dtype)

    def prepare(self, source: ModelSource, spec: SubnetSpec, workload: Workload, workdir: Path) -> Any:
        assert workdir.is_dir()
        self.prepared.append(spec.key)
        return spec.key

    @contextlib.contextmanager
    def open(self, source: ModelSource, spec: SubnetSpec, workload: Workload, prepared: Any) -> Iterator[Session]:
        assert prepared == spec.key
        self.opens.append(spec.key)

        def gen() -> tuple[float, float]:
            n = self.count.get(spec.key, 0)
            self.count[spec.key] = n + 1
            return self.value(spec, n)

        yield FnSession(gen, lambda: 1.5)


FAST = MeasureSettings(warmup=1, repetitions=2, rounds=2, passes=2, busy_retries=0, busy_tolerance=99.0)
SHAPES = [SubnetSpec(4), SubnetSpec(3), SubnetSpec(2)]


def test_rounds_interleave_shapes_in_rotated_order_and_prepare_once(tiny_base: Path) -> None:
    p = Scripted(FAST)
    m = measure_shapes(p, ModelSource.open(tiny_base), SHAPES, WL)
    assert p.prepared == ["L4-a1-f1", "L3-a1-f1", "L2-a1-f1"]
    a, b, c = (s.key for s in SHAPES)
    assert p.opens == [a, b, c, b, c, a, c, a, b, a, b, c]  # 2 passes × 2 rounds, rotated by one shape per round
    assert [r.shape for r in m.rows] == [a, b, c]
    for r in m.rows:
        assert r.ttft_ms.rounds == 4 and r.ttft_ms.repetitions == 8 and len(r.ttft_ms.pass_medians or []) == 2
        assert r.peak_mem_mb == 1.5 and r.measure_s is not None and r.q_heads == 4
    assert m.protocol.passes == 2 and m.protocol.rounds_per_pass == 2 and m.protocol.cpu_affinity
    assert m.noise_floor is not None and m.noise_floor.tpot_ms.median_abs_delta_pct == 0 and m.noise_floor.tpot_ms.within_5pct == 1


def test_median_of_round_medians_resists_a_slow_round_and_floor_sees_pass_drift(tiny_base: Path) -> None:
    # generations 0..2 = round 1 (1 warm-up + 2 timed), round 2 (n = 3..5) is slow, pass 2 (n >= 9) 20 % slower
    def value(spec: SubnetSpec, n: int) -> tuple[float, float]:
        base = 10.0 * (1.2 if n >= 9 else 1.0)
        return (base * (5 if n in (4, 5) else 1), 1.0)

    m = measure_shapes(Scripted(replace(FAST, rounds=3), value), ModelSource.open(tiny_base), [SubnetSpec(4)], WL)
    row = m.rows[0]
    assert row.ttft_ms.median == pytest.approx(12.0)  # rounds: 10, 50, 10 | 12, 12, 12 → median 12, not the mean
    assert row.ttft_ms.pass_medians == [10.0, 12.0]
    assert row.ttft_ms.mad_pct is not None and row.ttft_ms.mad_pct < 20
    assert m.noise_floor is not None
    assert m.noise_floor.ttft_ms.median_abs_delta_pct == pytest.approx(100 * 2 / 11, rel=1e-3)
    assert m.noise_floor.ttft_ms.within_10pct == 0 and m.noise_floor.tpot_ms.within_5pct == 1


def test_one_pass_has_no_floor_and_measure_uses_the_protocol(tiny_base: Path) -> None:
    src = ModelSource.open(tiny_base)
    m = measure_shapes(Scripted(replace(FAST, passes=1)), src, SHAPES, WL)
    assert m.noise_floor is None and m.rows[0].ttft_ms.pass_medians is None
    row = Scripted(FAST).measure(src, SubnetSpec(2), WL)
    assert row.ttft_ms.median == 20.0 and row.tpot_ms.median == 2.0 and row.ttft_ms.rounds == 4


def test_busy_rounds_are_measured_again_then_marked_or_refused(tiny_base: Path) -> None:
    src = ModelSource.open(tiny_base)
    always = replace(FAST, busy_tolerance=-100.0, busy_retries=2, rounds=1, passes=1)
    p = Scripted(always)
    row = measure_shapes(p, src, [SubnetSpec(4)], WL).rows[0]
    assert row.busy and row.remeasured == 2 and p.opens == ["L4-a1-f1"] * 3
    with pytest.raises(MachineBusyError, match="3 attempt"):
        measure_shapes(Scripted(replace(always, busy_policy="refuse")), src, [SubnetSpec(4)], WL)
    quiet = measure_shapes(Scripted(replace(FAST, busy_retries=2)), src, [SubnetSpec(4)], WL).rows[0]
    assert not quiet.busy and quiet.remeasured == 0


def test_table_records_protocol_floor_and_affinity(tiny_base: Path) -> None:
    from profilers.agent import run_profile

    seen: list[tuple[int, int, str]] = []
    t = run_profile(Scripted(FAST), ModelSource.open(tiny_base), SHAPES, WL, on_progress=lambda d, n, k: seen.append((d, n, k)))
    assert len(seen) == 12 and seen[-1][:2] == (12, 12)
    assert t.protocol is not None and t.noise_floor is not None and t.device.cpu_affinity == t.protocol.cpu_affinity
    assert parse_table(t.canonical_json()) == t


def test_affinity_choice_pinning_and_validation() -> None:
    allowed = allowed_cpus()
    assert choose_affinity(MeasureSettings(threads=1)) == allowed[-1:]
    assert choose_affinity(MeasureSettings(cpu_affinity=(allowed[0],))) == [allowed[0]]
    with pytest.raises(ConfigError, match="not available"):
        choose_affinity(MeasureSettings(cpu_affinity=(10_000,)))
    with pinned([allowed[0]]) as cpus:
        assert cpus == [allowed[0]]
    assert allowed_cpus() == allowed


def test_busy_rule_spread_and_settings_validation() -> None:
    import os

    free = (os.cpu_count() or 1) - 1
    assert not is_busy(free + 0.1, 1, 0.25) and is_busy(free + 0.5, 1, 0.25)
    assert is_busy(0.0, 1, 0.25, on_ours=0.5) and not is_busy(0.0, 1, 0.25, on_ours=0.1)
    assert mad_pct([10, 10, 11, 9, 30]) == pytest.approx(10.0)
    for bad in ({"repetitions": 0}, {"rounds": 0}, {"passes": 0}, {"busy_policy": "ignore"}, {"cpu_affinity": ()}):
        with pytest.raises(ConfigError):
            MeasureSettings(**bad)  # type: ignore[arg-type]


class SteppedRunner:
    """Prefill costs 20 ms, each decode step 5 ms, on a stepped clock (no sleeping: a loaded machine cannot stretch
    it, which made the sleeping version of this test fail under load)."""

    def __init__(self) -> None:
        self.calls = {"prefill": 0, "decode": 0}
        self.now_s = 100.0

    def clock(self) -> float:
        return self.now_s

    def prefill(self) -> int:
        self.calls["prefill"] += 1
        self.now_s += 0.02
        return 0

    def decode(self, state: int) -> int:
        self.calls["decode"] += 1
        self.now_s += 0.005
        return state + 1

    def sync(self) -> None:
        pass


def test_one_generation_times_prefill_and_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    import profilers.timing as timing

    r = SteppedRunner()
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=r.clock))  # only this module's clock
    ttft, tpot = one_generation(r, 5)
    assert r.calls == {"prefill": 1, "decode": 4}
    assert ttft == pytest.approx(20.0) and tpot == pytest.approx(5.0)


def test_monitor_sees_our_own_work_as_not_contention_and_facts_are_read() -> None:
    m = CpuMonitor(tuple(allowed_cpus()[-1:]))
    m.start()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.3:
        sum(i * i for i in range(1000))
    assert m.stop() >= 0 and m.on_ours >= 0
    rec = FactsRecorder("devX", 1)
    rec.start()
    f = rec.finish()
    assert f.name == "devX" and f.cpu_count >= 1 and f.cpu_model and len(f.load_avg_end) == 3
