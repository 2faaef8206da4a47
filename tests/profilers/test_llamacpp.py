"""The llama.cpp flow: pure parts without the library, the unavailable report, and real GGUF subnets when installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.errors import ConfigError
from core.spec import SubnetSpec
from profilers.base import MeasureSettings
from profilers.plugins.llamacpp.config import PerfCounters, check_batch, gguf_dtype, latency_from_perf, llama_kwargs
from profilers.registry import get_profiler, profiler_class
from profilers.source import ModelSource
from profilers.workload import Workload

HAS = importlib.util.find_spec("llama_cpp") is not None


def test_dtypes_batch_and_context_arguments() -> None:
    assert [gguf_dtype(Workload(1, 8, 4, d)) for d in ("fp32", "fp16", "q8_0", "q4_k")] == ["f32", "f16", "q8_0", "q4_k"]
    with pytest.raises(ConfigError, match="does not support dtype 'bf16'"):
        gguf_dtype(Workload(1, 8, 4, "bf16"))
    with pytest.raises(ConfigError, match="batch 1"):
        check_batch(Workload(2, 8, 4))
    kw = llama_kwargs("/m.gguf", Workload(1, 128, 64), 1)
    assert kw["n_batch"] == kw["n_ubatch"] == 128 and kw["n_ctx"] == 192 and kw["no_perf"] is False and kw["n_gpu_layers"] == 0
    assert kw["n_threads"] == kw["n_threads_batch"] == 1


def test_latency_from_recorded_perf_counters() -> None:
    # the counters of one measured b1-p128-g64 fp16 generation of the bundled base at L12 (TTFT 47.77 ms, TPOT 2.305 ms)
    rec = SimpleNamespace(t_start_ms=0.0, t_load_ms=12.1, t_p_eval_ms=47.77, t_eval_ms=145.2, n_p_eval=128, n_eval=63, n_reused=62)
    ttft, tpot = latency_from_perf(PerfCounters.from_struct(rec), Workload(1, 128, 64))
    assert ttft == pytest.approx(47.77) and tpot == pytest.approx(145.2 / 63)
    with pytest.raises(ConfigError, match="saw 128 prompt / 64 decode tokens, expected 128 / 63"):
        latency_from_perf(PerfCounters(47.7, 128, 150.0, 64), Workload(1, 128, 64))
    with pytest.raises(ConfigError, match="empty"):
        latency_from_perf(PerfCounters(0.0, 128, 0.0, 63), Workload(1, 128, 64))


def test_unavailable_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    reason = profiler_class("llamacpp").unavailable_reason()
    assert reason is not None and reason.startswith("llama_cpp is not installed")


@pytest.mark.skipif(not HAS, reason="llama-cpp-python is not installed (optional extra 'llamacpp')")
def test_real_gguf_subnets_in_f16_and_q8_0(tiny_base: Path) -> None:
    from profilers.agent import run_profile

    src = ModelSource.open(tiny_base)
    shapes = [SubnetSpec(4), SubnetSpec(2, 0.5, 0.75)]
    settings = MeasureSettings(warmup=1, repetitions=1, rounds=1, passes=2, busy_retries=0)
    for dtype in ("fp16", "q8_0"):
        t = run_profile(get_profiler("llamacpp", settings), src, shapes, Workload(1, 12, 4, dtype))
        assert t.engine.name == "llamacpp" and t.engine.build_flags["gguf_type"] == {"fp16": "f16", "q8_0": "q8_0"}[dtype]
        big, small = t.rows
        assert (big.q_heads, big.kv_groups, big.ffn_channels) == (4, 2, 128) and (small.q_heads, small.kv_groups, small.ffn_channels) == (2, 1, 96)
        assert all(r.ttft_ms.median > 0 and r.tpot_ms.median > 0 and r.ttft_ms.rounds == 2 for r in t.rows)
        assert t.noise_floor is not None
