"""``llamacpp``: each shape written as a GGUF (``core.export.gguf``: f32 / f16 / Q8_0 / Q4_K) and run by llama.cpp
through llama-cpp-python on the CPU; TTFT / TPOT from llama.cpp's own perf counters (``llama_perf_context``).

One generation = reset the context, evaluate the prompt in one batch (``t_p_eval_ms`` = TTFT), then ``gen_len - 1``
greedy single-token decodes (``t_eval_ms / n_eval`` = TPOT). Optional dependency: ``pip install 'amoeba[llamacpp]'``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.spec import SubnetSpec
from profilers.base import Profiler, Session
from profilers.errors import ProfilerUnavailable
from profilers.plugins.llamacpp.config import LLAMACPP_DTYPES, PerfCounters, check_batch, gguf_dtype, latency_from_perf, llama_kwargs
from profilers.source import ModelSource
from profilers.table import EngineFacts
from profilers.timing import RssProbe
from profilers.workload import Workload


class _LlamaSession:
    """Greedy generation on one ``llama_cpp.Llama``; timings read from its perf counters after every generation."""

    def __init__(self, llm: Any, ids: list[int], workload: Workload, probe: RssProbe) -> None:
        import llama_cpp
        import numpy as np

        self.lib, self.np, self.llm, self.ids, self.workload, self.probe = llama_cpp, np, llm, ids, workload, probe
        self.vocab = int(llm.n_vocab())

    def _next(self) -> int:
        logits = self.np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.vocab,))
        return int(logits.argmax())

    def generate(self) -> tuple[float, float]:
        llm = self.llm
        llm.reset()
        self.lib.llama_perf_context_reset(llm.ctx)
        llm.eval(self.ids)
        tok = self._next()
        for _ in range(self.workload.gen_len - 1):
            llm.eval([tok])
            tok = self._next()
        return latency_from_perf(PerfCounters.from_struct(self.lib.llama_perf_context(llm.ctx)), self.workload)

    def peak_mem_mb(self) -> float | None:
        return self.probe.peak_mb()


class LlamaCppProfiler(Profiler):
    """``llamacpp``: llama.cpp CPU backend, GGUF per shape, KV cache f16 (llama.cpp's default)."""

    name = "llamacpp"
    dtypes = tuple(LLAMACPP_DTYPES)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("llama_cpp") is None:
            return "llama_cpp is not installed (pip install 'amoeba[llamacpp]': llama-cpp-python builds from source, 10-30 min)"
        if importlib.util.find_spec("gguf") is None:
            return "gguf is not installed (pip install gguf)"
        return None

    def check_workload(self, workload: Workload) -> None:
        gguf_dtype(workload)
        check_batch(workload)

    def engine_facts(self, workload: Workload) -> EngineFacts:
        import llama_cpp

        self._check_device()
        system = llama_cpp.llama_print_system_info().decode(errors="replace")
        flags = {"gguf_type": gguf_dtype(workload), "n_threads": str(self.settings.threads), "kv_cache": "f16",
                 "timings": "llama_perf_context: t_p_eval_ms (TTFT), t_eval_ms / n_eval (TPOT)", "system_info": system.strip()[:400]}
        return EngineFacts(name=self.name, version=str(llama_cpp.__version__), dtype=workload.dtype,
                           quantization=gguf_dtype(workload) if workload.dtype.startswith("q") else None, device="cpu", build_flags=flags)

    def _check_device(self) -> None:
        if self.settings.device != "cpu":
            raise ProfilerUnavailable(f"llamacpp: only the CPU backend is measured here (device {self.settings.device!r} requested)")

    def prepare(self, source: ModelSource, spec: SubnetSpec, workload: Workload, workdir: Path) -> Any:
        """The shape as a GGUF of the workload's weight type (random weights from the config, or the exported ones)."""
        import torch

        from core.export.gguf import write_gguf_model

        reason = self.unavailable_reason()
        if reason:
            raise ProfilerUnavailable(f"llamacpp unavailable: {reason}")
        self.check_workload(workload)
        self._check_device()
        model = source.build_torch(spec, torch.float32)
        path = workdir / f"{spec.key}-{gguf_dtype(workload)}.gguf"
        write_gguf_model(model, path, dtype=gguf_dtype(workload), name=f"amoeba-{spec.key}")
        return path

    @contextlib.contextmanager
    def open(self, source: ModelSource, spec: SubnetSpec, workload: Workload, prepared: Any) -> Iterator[Session]:
        import llama_cpp
        import numpy as np

        probe = RssProbe()
        llm: Any = llama_cpp.Llama(**llama_kwargs(str(prepared), workload, self.settings.threads))
        try:
            probe.rearm()
            ids = np.random.default_rng(0).integers(0, int(llm.n_vocab()), workload.prompt_len).tolist()
            yield _LlamaSession(llm, ids, workload, probe)
        finally:
            llm.close()
