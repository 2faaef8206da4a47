"""Pure parts of the TensorRT-LLM flow: LLM / sampling arguments per workload, and parsing its perf metrics.

The LLM API (PyTorch backend) builds the model from ``config.json`` with ``load_format="dummy"`` (random
weights), so a shape needs only its config. With ``return_perf_metrics=True`` every ``RequestOutput``
carries ``metrics_dict`` (``MetricNames.TTFT`` / ``TPOT`` in seconds) and each completion carries
``request_perf_metrics.timing_metrics`` (``arrival_time``, ``first_token_time``, ``last_token_time``).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from core.errors import ConfigError
from profilers.workload import Workload

TRT_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def llm_kwargs(model_dir: str, workload: Workload) -> dict[str, Any]:
    """Keyword arguments of ``tensorrt_llm.LLM`` for one shape directory at ``workload``."""
    if workload.dtype not in TRT_DTYPES:
        raise ConfigError(f"tensorrt_llm: unsupported dtype {workload.dtype!r} (supported: {', '.join(TRT_DTYPES)})")
    return {
        "model": model_dir,
        "backend": "pytorch",
        "load_format": "dummy",
        "skip_tokenizer_init": True,
        "dtype": TRT_DTYPES[workload.dtype],
        "max_batch_size": workload.batch,
        "max_num_tokens": max(workload.batch * workload.prompt_len, 256),
        "max_seq_len": workload.context_len,
        "return_perf_metrics": True,
        "enable_chunked_prefill": False,
    }


def sampling_kwargs(workload: Workload) -> dict[str, Any]:
    """Keyword arguments of ``tensorrt_llm.SamplingParams``: exactly ``gen_len`` greedy tokens, no detokenising."""
    return {"max_tokens": workload.gen_len, "ignore_eos": True, "temperature": 0.0, "top_k": 1,
            "detokenize": False, "return_perf_metrics": True}


def _seconds(v: Any) -> float:
    if isinstance(v, _dt.timedelta):
        return v.total_seconds()
    return float(v)


def _get(d: Any, key: str) -> Any:
    """Value of ``key`` in a mapping keyed by strings or by enums whose ``.value`` is the string."""
    for k, v in dict(d).items():
        if k == key or getattr(k, "value", None) == key or str(k).split(".")[-1].lower() == key:
            return v
    return None


def request_latency_ms(output: Any) -> tuple[float, float]:
    """(ttft_ms, tpot_ms) of one ``RequestOutput``: ``metrics_dict`` first, else the timing metrics of output 0."""
    md = getattr(output, "metrics_dict", None)
    if md:
        ttft, tpot = _get(md, "ttft"), _get(md, "tpot")
        if ttft is not None and tpot is not None:
            return _seconds(ttft) * 1e3, _seconds(tpot) * 1e3
    outs = getattr(output, "outputs", None) or []
    perf = getattr(outs[0], "request_perf_metrics", None) if outs else None
    tm = getattr(perf, "timing_metrics", None)
    if tm is None:
        raise ConfigError("tensorrt_llm output has no perf metrics: was return_perf_metrics=True passed to LLM and SamplingParams?")
    n = len(getattr(outs[0], "token_ids", []) or [])
    if n < 2:
        raise ConfigError(f"tensorrt_llm output has {n} tokens; TPOT needs at least 2")
    arrival, first, last = (_seconds(getattr(tm, k)) for k in ("arrival_time", "first_token_time", "last_token_time"))
    return (first - arrival) * 1e3, (last - first) / (n - 1) * 1e3


def batch_latency_ms(outputs: list[Any]) -> tuple[float, float]:
    """A batch's TTFT is its slowest request's; its TPOT the mean over requests."""
    if not outputs:
        raise ConfigError("tensorrt_llm returned no outputs")
    pairs = [request_latency_ms(o) for o in outputs]
    return max(p[0] for p in pairs), sum(p[1] for p in pairs) / len(pairs)
