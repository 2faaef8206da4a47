"""The timing protocol on a runner with known costs, and the busy policy."""

from __future__ import annotations

import time

import pytest

from core.errors import ConfigError
from profilers.base import MeasureSettings
from profilers.errors import MachineBusyError
from profilers.facts import CpuMonitor, FactsRecorder, is_busy
from profilers.timing import time_runner
from profilers.workload import Workload


class SleepRunner:
    """Prefill costs 20 ms, each decode step 5 ms (sleeps: wall time without CPU)."""

    def __init__(self) -> None:
        self.calls = {"prefill": 0, "decode": 0}

    def prefill(self):
        self.calls["prefill"] += 1
        time.sleep(0.02)
        return 0

    def decode(self, state):
        self.calls["decode"] += 1
        time.sleep(0.005)
        return state + 1

    def sync(self) -> None:
        pass


def test_ttft_and_tpot_follow_the_protocol() -> None:
    r = SleepRunner()
    t = time_runner(r, Workload(1, 4, 5), MeasureSettings(warmup=1, repetitions=3, busy_retries=0, busy_tolerance=99))
    assert r.calls == {"prefill": 4, "decode": 16}
    assert 19 < t.ttft_ms.median < 40 and 4.5 < t.tpot_ms.median < 12
    assert t.ttft_ms.repetitions == 3 and not t.busy


def test_busy_marks_or_refuses() -> None:
    from dataclasses import replace

    always_busy = MeasureSettings(busy_tolerance=-100.0, busy_retries=1, warmup=0, repetitions=1)
    r = SleepRunner()
    t = time_runner(r, Workload(1, 4, 2), always_busy)
    assert t.busy and r.calls["prefill"] == 2  # re-measured once, then marked
    with pytest.raises(MachineBusyError, match="other processes used"):
        time_runner(SleepRunner(), Workload(1, 4, 2), replace(always_busy, busy_policy="refuse"))


def test_busy_rule_and_settings_validation() -> None:
    import os

    free = (os.cpu_count() or 1) - 1
    assert not is_busy(free + 0.1, 1, 0.25) and is_busy(free + 0.5, 1, 0.25)
    with pytest.raises(ConfigError):
        MeasureSettings(repetitions=0)
    with pytest.raises(ConfigError):
        MeasureSettings(busy_policy="ignore")  # type: ignore[arg-type]


def test_monitor_sees_our_own_work_as_not_contention_and_facts_are_read() -> None:
    m = CpuMonitor()
    m.start()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.3:
        sum(i * i for i in range(1000))
    assert m.stop() >= 0
    rec = FactsRecorder("devX", 1)
    rec.start()
    f = rec.finish()
    assert f.name == "devX" and f.cpu_count >= 1 and f.cpu_model and len(f.load_avg_end) == 3
