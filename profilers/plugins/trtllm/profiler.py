"""``tensorrt_llm``: LLM API (PyTorch backend) per shape with dummy weights; reads the TTFT / TPOT it reports."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.spec import SubnetSpec
from profilers.base import Profiler, Session
from profilers.errors import ProfilerUnavailable
from profilers.plugins.trtllm.config import TRT_DTYPES, batch_latency_ms, llm_kwargs, sampling_kwargs
from profilers.source import ModelSource
from profilers.table import EngineFacts
from profilers.timing import FnSession
from profilers.workload import Workload


class TrtLlmProfiler(Profiler):
    """``tensorrt_llm``: NVIDIA GPUs only; reports ``unavailable`` elsewhere."""

    name = "tensorrt_llm"
    dtypes = tuple(TRT_DTYPES)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("tensorrt_llm") is None:
            return "tensorrt_llm is not installed (pip install tensorrt-llm; needs an NVIDIA GPU with CUDA)"
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU visible to torch"
        return None

    def engine_facts(self, workload: Workload) -> EngineFacts:
        import tensorrt_llm

        return EngineFacts(name=self.name, version=str(tensorrt_llm.__version__), dtype=workload.dtype, device="cuda",
                           build_flags={"api": "LLM", "backend": "pytorch", "load_format": "dummy"})

    def prepare(self, source: ModelSource, spec: SubnetSpec, workload: Workload, workdir: Path) -> Any:
        """The shape's ``config.json`` (the LLM API builds from it with dummy weights)."""
        reason = self.unavailable_reason()
        if reason:
            raise ProfilerUnavailable(f"tensorrt_llm unavailable: {reason}")
        self.check_workload(workload)
        return source.write_shape_dir(spec, workdir / spec.key, weights=False)

    @contextlib.contextmanager
    def open(self, source: ModelSource, spec: SubnetSpec, workload: Workload, prepared: Any) -> Iterator[Session]:
        import numpy as np
        from tensorrt_llm import LLM, SamplingParams

        llm: Any = LLM(**llm_kwargs(str(prepared), workload))
        try:
            rng = np.random.default_rng(0)
            prompts = [rng.integers(0, source.info.vocab_size, workload.prompt_len).tolist() for _ in range(workload.batch)]
            sp = SamplingParams(**sampling_kwargs(workload))
            yield FnSession(lambda: batch_latency_ms(llm.generate(prompts, sp, use_tqdm=False)), lambda: None)
        finally:
            llm.shutdown()
