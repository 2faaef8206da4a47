"""Pure parts of the llama.cpp flow (no ``llama_cpp`` import): dtype → GGUF type, context arguments, perf counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError
from profilers.workload import Workload

#: workload dtype → GGUF weight type written per shape (``core.export.gguf``)
LLAMACPP_DTYPES: dict[str, str] = {"fp32": "f32", "fp16": "f16", "q8_0": "q8_0", "q4_k": "q4_k"}


def gguf_dtype(workload: Workload) -> str:
    """The GGUF weight type of ``workload`` (``ConfigError`` naming the supported ones)."""
    t = LLAMACPP_DTYPES.get(workload.dtype)
    if t is None:
        raise ConfigError(f"engine llamacpp does not support dtype {workload.dtype!r} (supported: {', '.join(LLAMACPP_DTYPES)})")
    return t


def check_batch(workload: Workload) -> None:
    if workload.batch != 1:
        raise ConfigError("engine llamacpp measures one sequence (batch 1); use a b1 workload")


def llama_kwargs(model_path: str, workload: Workload, threads: int) -> dict[str, Any]:
    """``llama_cpp.Llama`` arguments: the whole prompt in one batch, pinned threads, perf counters on, CPU only."""
    n_ctx = max(64, workload.context_len)
    n_batch = max(32, workload.prompt_len)
    return {"model_path": model_path, "n_ctx": n_ctx, "n_batch": n_batch, "n_ubatch": n_batch, "n_threads": threads,
            "n_threads_batch": threads, "n_gpu_layers": 0, "logits_all": False, "no_perf": False, "verbose": False, "seed": 0}


@dataclass(frozen=True)
class PerfCounters:
    """llama.cpp's own timings of a context since its last reset (``llama_perf_context``)."""

    t_p_eval_ms: float
    n_p_eval: int
    t_eval_ms: float
    n_eval: int

    @classmethod
    def from_struct(cls, data: Any) -> PerfCounters:
        """From a ``llama_perf_context_data`` (or anything with its fields)."""
        return cls(float(data.t_p_eval_ms), int(data.n_p_eval), float(data.t_eval_ms), int(data.n_eval))


def latency_from_perf(perf: PerfCounters, workload: Workload) -> tuple[float, float]:
    """(ttft_ms, tpot_ms) of one generation: prompt-eval time, and decode time per generated token.

    The counts must be exactly one prompt of ``prompt_len`` tokens and ``gen_len - 1`` single-token decodes, else
    the counters mixed other work in (``ConfigError``): llama.cpp counts a batch of one token as decode and
    clamps empty counters to 1.
    """
    want_p, want_e = workload.batch * workload.prompt_len, workload.gen_len - 1
    if perf.n_p_eval != want_p or perf.n_eval != want_e:
        raise ConfigError(f"llama.cpp perf counters saw {perf.n_p_eval} prompt / {perf.n_eval} decode tokens, expected {want_p} / {want_e}")
    if perf.t_p_eval_ms <= 0 or perf.t_eval_ms <= 0:
        raise ConfigError(f"llama.cpp perf counters are empty (t_p_eval_ms {perf.t_p_eval_ms}, t_eval_ms {perf.t_eval_ms}); was no_perf set?")
    return perf.t_p_eval_ms, perf.t_eval_ms / perf.n_eval
