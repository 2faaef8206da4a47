"""One contract for every registered plugin: availability, workload handling, row schema."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.spec import SubnetSpec
from profilers.agent import run_profile
from profilers.base import MeasureSettings, Profiler
from profilers.errors import ProfilerUnavailable
from profilers.registry import PLUGINS, get_profiler, names, profiler_class
from profilers.source import ModelSource
from profilers.table import ProfileTable, parse_table
from profilers.workload import Workload

FAST = MeasureSettings(warmup=1, repetitions=2, threads=1, busy_retries=0)
WL = Workload(1, 12, 4)


def test_registry_is_lazy_and_complete() -> None:
    import sys

    assert {"torch", "onnxruntime", "tensorrt_llm", "mlc_llm"} <= set(names())
    assert all(":" in PLUGINS.target(n) for n in PLUGINS)
    with pytest.raises(ConfigError, match="unknown engine 'nope'"):
        profiler_class("nope")
    assert "tensorrt_llm" not in sys.modules and "mlc_llm" not in sys.modules


@pytest.fixture(params=names())
def plugin(request: pytest.FixtureRequest) -> Profiler:
    return get_profiler(request.param, FAST)


def test_availability_is_reported(plugin: Profiler) -> None:
    reason = plugin.unavailable_reason()
    assert reason is None or (isinstance(reason, str) and reason)
    assert plugin.available() == (reason is None)
    assert plugin.name in names()


def test_unsupported_dtype_is_refused(plugin: Profiler) -> None:
    with pytest.raises(ConfigError, match="dtype"):
        plugin.check_workload(Workload(1, 8, 4, "int3weird"))


def test_unavailable_plugin_refuses_to_run(plugin: Profiler, tiny_base) -> None:
    if plugin.available():
        pytest.skip(f"{plugin.name} is available here; covered by the real-run contract")
    src = ModelSource.open(tiny_base)
    with pytest.raises(ProfilerUnavailable, match=f"{plugin.name} unavailable"):
        run_profile(plugin, src, [SubnetSpec(4)], WL)
    with pytest.raises(ProfilerUnavailable):
        plugin.measure(src, SubnetSpec(4), Workload(1, 8, 4, plugin.dtypes[0]))


@pytest.mark.parametrize("engine", ["torch", "onnxruntime", "llamacpp"])
def test_cpu_flows_measure_for_real(engine: str, tiny_base) -> None:
    prof = get_profiler(engine, FAST)
    if engine == "llamacpp" and not prof.available():
        pytest.skip(f"llamacpp unavailable: {prof.unavailable_reason()}")
    assert prof.available()
    src = ModelSource.open(tiny_base)
    shapes = [SubnetSpec(4), SubnetSpec(2, 0.5, 0.75)]
    rows = []
    table = run_profile(prof, src, shapes, WL, device_name="ci", command="pytest", on_row=lambda i, r: rows.append((i, r.shape)))
    assert rows == [(0, "L4-a1-f1"), (1, "L2-a0.5-f0.75")]
    assert isinstance(table, ProfileTable) and parse_table(table.canonical_json()) == table
    assert table.engine.name == engine and table.workload == "b1-p12-g4" and table.device.threads == 1
    big, small = table.rows
    assert (big.kv_groups, big.ffn_channels, small.kv_groups, small.ffn_channels) == (2, 128, 1, 96)
    for r in table.rows:
        assert r.ttft_ms.repetitions == 2 and r.tpot_ms.repetitions == 2
        assert 0 < r.tpot_ms.median < 1000 and r.ttft_ms.p90 >= r.ttft_ms.median
        assert r.contention is not None
    assert table.device.load_avg_end is not None
