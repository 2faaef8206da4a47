"""Pure parts of the TensorRT-LLM and MLC-LLM flows, on recorded report samples written for these tests."""

from __future__ import annotations

import datetime as dt
import enum
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.errors import ConfigError
from profilers.plugins.mlc.config import build_plan, completion_kwargs, quantization, usage_latency_ms
from profilers.plugins.trtllm.config import batch_latency_ms, llm_kwargs, request_latency_ms, sampling_kwargs
from profilers.workload import Workload


class MetricNames(enum.Enum):  # same shape as tensorrt_llm.metrics.MetricNames
    TTFT = "ttft"
    TPOT = "tpot"
    E2E = "e2e"


def test_trtllm_arguments_follow_the_workload() -> None:
    w = Workload(2, 128, 64, "fp16")
    kw = llm_kwargs("/m/L8-a1-f1", w)
    assert kw["load_format"] == "dummy" and kw["backend"] == "pytorch" and kw["skip_tokenizer_init"]
    assert (kw["dtype"], kw["max_batch_size"], kw["max_seq_len"], kw["max_num_tokens"]) == ("float16", 2, 192, 256)
    assert kw["return_perf_metrics"] is True
    sp = sampling_kwargs(w)
    assert sp["max_tokens"] == 64 and sp["ignore_eos"] and sp["detokenize"] is False
    with pytest.raises(ConfigError, match="unsupported dtype 'int8'"):
        llm_kwargs("/m", Workload(1, 8, 4, "int8"))


def test_trtllm_metrics_dict_with_enum_keys() -> None:
    out = SimpleNamespace(metrics_dict={MetricNames.TTFT: 0.0125, MetricNames.TPOT: 0.0031, MetricNames.E2E: 0.21}, outputs=[])
    ttft, tpot = request_latency_ms(out)
    assert ttft == pytest.approx(12.5) and tpot == pytest.approx(3.1)
    assert request_latency_ms(SimpleNamespace(metrics_dict={"ttft": 0.01, "tpot": 0.002}))[1] == pytest.approx(2.0)


def test_trtllm_timing_metrics_fallback_and_batch() -> None:
    def req(first_ms: float, last_ms: float, n: int):
        tm = SimpleNamespace(arrival_time=dt.timedelta(milliseconds=100), first_token_time=dt.timedelta(milliseconds=100 + first_ms),
                             last_token_time=dt.timedelta(milliseconds=100 + last_ms))
        return SimpleNamespace(metrics_dict={}, outputs=[SimpleNamespace(token_ids=list(range(n)), request_perf_metrics=SimpleNamespace(timing_metrics=tm))])

    a, b = req(20, 83, 64), req(25, 88, 64)
    assert request_latency_ms(a) == pytest.approx((20.0, 1.0))
    assert batch_latency_ms([a, b]) == pytest.approx((25.0, 1.0))
    with pytest.raises(ConfigError, match="return_perf_metrics"):
        request_latency_ms(SimpleNamespace(metrics_dict=None, outputs=[SimpleNamespace(token_ids=[1, 2])]))
    with pytest.raises(ConfigError, match="no outputs"):
        batch_latency_ms([])


def test_mlc_build_commands(tmp_path: Path) -> None:
    plan = build_plan(tmp_path / "hf", tmp_path / "mlc", Workload(1, 128, 64, "q4f16_1"), "cuda", python="py")
    cw, gc, cp = plan.commands()
    assert cw[:4] == ["py", "-m", "mlc_llm", "convert_weight"] and cw[cw.index("--quantization") + 1] == "q4f16_1"
    assert gc[3] == "gen_config" and gc[gc.index("--context-window-size") + 1] == "192" and gc[gc.index("--conv-template") + 1] == "LM"
    assert gc[gc.index("--prefill-chunk-size") + 1] == "128"
    assert cp[3] == "compile" and cp[4].endswith("mlc-chat-config.json") and cp[-1] == str(plan.model_lib)
    assert quantization(Workload(1, 8, 4, "fp16")) == "q0f16" and quantization(Workload(1, 8, 4)) == "q0f32"
    with pytest.raises(ConfigError, match="unsupported dtype 'int8'"):
        quantization(Workload(1, 8, 4, "int8"))
    kw = completion_kwargs([5, 6, 7], Workload(1, 3, 16))
    assert kw["prompt"] == [5, 6, 7] and kw["max_tokens"] == 16 and kw["extra_body"]["debug_config"]["ignore_eos"]


RECORDED_MLC_USAGE = """{"prompt_tokens": 128, "completion_tokens": 64, "total_tokens": 192,
 "extra": {"prompt_tokens": 128, "completion_tokens": 64, "prefill_tokens": 128, "decode_tokens": 63,
           "prefill_tokens_per_s": 5120.0, "decode_tokens_per_s": 250.0, "end_to_end_latency_s": 0.277,
           "ttft_s": 0.025, "inter_token_latency_s": 0.0043}}"""


def test_mlc_usage_parsing() -> None:
    usage = json.loads(RECORDED_MLC_USAGE)
    assert usage_latency_ms(usage) == pytest.approx((25.0, 4.0))
    assert usage_latency_ms(SimpleNamespace(extra=usage["extra"])) == pytest.approx((25.0, 4.0))
    with pytest.raises(ConfigError, match="no 'extra'"):
        usage_latency_ms({"prompt_tokens": 1})
    with pytest.raises(ConfigError, match="lacks decode_tokens_per_s"):
        usage_latency_ms({"extra": {"ttft_s": 0.1}})
