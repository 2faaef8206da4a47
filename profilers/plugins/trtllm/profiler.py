"""``tensorrt_llm``: LLM API (PyTorch backend) per shape with dummy weights; reads the TTFT / TPOT it reports."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

from core.spec import SubnetSpec
from profilers.base import Profiler
from profilers.errors import ProfilerUnavailable
from profilers.plugins.trtllm.config import TRT_DTYPES, batch_latency_ms, llm_kwargs, sampling_kwargs
from profilers.source import ModelSource
from profilers.table import EngineFacts, ProfileRow
from profilers.timing import time_generations
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

    def measure(self, source: ModelSource, spec: SubnetSpec, workload: Workload) -> ProfileRow:
        reason = self.unavailable_reason()
        if reason:
            raise ProfilerUnavailable(f"tensorrt_llm unavailable: {reason}")
        self.check_workload(workload)
        import numpy as np
        from tensorrt_llm import LLM, SamplingParams

        kv, ffn = source.kept(spec)
        with tempfile.TemporaryDirectory(prefix="amoeba-trt-") as tmp:
            shape_dir = source.write_shape_dir(spec, Path(tmp) / spec.key, weights=False)
            llm: Any = LLM(**llm_kwargs(str(shape_dir), workload))
            try:
                rng = np.random.default_rng(0)
                prompts = [rng.integers(0, source.info.vocab_size, workload.prompt_len).tolist() for _ in range(workload.batch)]
                sp = SamplingParams(**sampling_kwargs(workload))
                timing = time_generations(lambda: batch_latency_ms(llm.generate(prompts, sp, use_tqdm=False)), self.settings,
                                       what=f"tensorrt_llm {spec.key}")
            finally:
                llm.shutdown()
        return ProfileRow(shape=spec.key, num_layers=spec.num_layers, kv_groups=kv, ffn_channels=ffn,
                          ttft_ms=timing.ttft_ms, tpot_ms=timing.tpot_ms, peak_mem_mb=None, busy=timing.busy, contention=timing.contention)
