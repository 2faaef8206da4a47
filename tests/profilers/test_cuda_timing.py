"""CUDA-event timing of one generation, on a fake ``torch.cuda`` (no GPU here): event order and arithmetic."""

from __future__ import annotations

from typing import Any

import pytest

from profilers.timing import cuda_event_generation


class FakeClock:
    """A device timeline: the runner advances it, events read it when recorded."""

    def __init__(self) -> None:
        self.now_ms = 0.0
        self.synced = 0


class FakeEvent:
    def __init__(self, clock: FakeClock, enable_timing: bool) -> None:
        assert enable_timing
        self.clock, self.at = clock, None

    def record(self) -> None:
        self.at = self.clock.now_ms

    def synchronize(self) -> None:
        self.clock.synced += 1

    def elapsed_time(self, other: FakeEvent) -> float:
        assert self.at is not None and other.at is not None, "elapsed_time on an event that was never recorded"
        return other.at - self.at


class FakeCuda:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def Event(self, enable_timing: bool = False) -> FakeEvent:  # noqa: N802 - torch.cuda.Event
        return FakeEvent(self.clock, enable_timing)


class Runner:
    """Prefill costs 30 ms of device time, each decode step 4 ms."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.steps = clock, 0

    def prefill(self) -> Any:
        self.clock.now_ms += 30.0
        return 0

    def decode(self, state: Any) -> Any:
        self.clock.now_ms += 4.0
        self.steps += 1
        return state + 1

    def sync(self) -> None:
        self.clock.synced += 1


def test_ttft_is_the_prefill_and_tpot_the_mean_decode_step_on_the_device_timeline() -> None:
    clock = FakeClock()
    clock.now_ms = 1000.0  # work queued before the generation does not count
    runner = Runner(clock)
    ttft_ms, tpot_ms = cuda_event_generation(runner, gen_len=9, cuda=FakeCuda(clock))
    assert runner.steps == 8
    assert ttft_ms == pytest.approx(30.0) and tpot_ms == pytest.approx(4.0)
    assert clock.synced == 2  # once before (drain queued work), once at the end: none inside the decode loop
