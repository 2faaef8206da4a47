"""``mlc_llm``: build each shape with MLC's CLI (random fp16 weights written first), then time it via MLCEngine."""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.spec import SubnetSpec
from profilers.base import Profiler, Session
from profilers.errors import ProfilerUnavailable
from profilers.plugins.mlc.config import build_plan, completion_kwargs, quantization, usage_latency_ms
from profilers.source import ModelSource
from profilers.table import EngineFacts
from profilers.timing import FnSession
from profilers.workload import Workload


class MlcProfiler(Profiler):
    """``mlc_llm``: any TVM target (``cuda``, ``vulkan``, ``metal``, ``cpu``…) given as ``settings.device``."""

    name = "mlc_llm"
    dtypes = ("fp32", "fp16", "bf16", "q4f16_1", "q4f32_1", "q3f16_1", "q0f16", "q0f32")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        for mod in ("mlc_llm", "tvm"):
            if importlib.util.find_spec(mod) is None:
                return f"{mod} is not installed (MLC-LLM wheels: see the MLC-LLM install docs)"
        return None

    def check_workload(self, workload: Workload) -> None:
        quantization(workload)
        if workload.batch != 1:
            raise ConfigError("mlc_llm profiler measures batch 1 (one request); use a b1 workload")

    def engine_facts(self, workload: Workload) -> EngineFacts:
        import mlc_llm

        return EngineFacts(name=self.name, version=str(getattr(mlc_llm, "__version__", "unknown")), dtype=workload.dtype,
                           quantization=quantization(workload), device=self.settings.device,
                           build_flags={"conv_template": "LM", "context_window_size": str(workload.context_len)})

    def prepare(self, source: ModelSource, spec: SubnetSpec, workload: Workload, workdir: Path) -> Any:
        """Random fp16 weights + MLC's convert / gen_config / compile, once per shape."""
        reason = self.unavailable_reason()
        if reason:
            raise ProfilerUnavailable(f"mlc_llm unavailable: {reason}")
        self.check_workload(workload)
        hf = source.write_shape_dir(spec, workdir / "hf", weights=True)
        plan = build_plan(hf, workdir / "mlc", workload, self.settings.device)
        for cmd in plan.commands():
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise ConfigError(f"mlc_llm build step failed ({' '.join(cmd[2:4])}): {res.stderr.strip()[-400:]}")
        return plan

    @contextlib.contextmanager
    def open(self, source: ModelSource, spec: SubnetSpec, workload: Workload, prepared: Any) -> Iterator[Session]:
        import numpy as np
        from mlc_llm import MLCEngine

        plan = prepared
        engine: Any = MLCEngine(model=str(plan.out_dir), model_lib=str(plan.model_lib), device=self.settings.device, mode="local")
        try:
            prompt = np.random.default_rng(0).integers(0, source.info.vocab_size, workload.prompt_len).tolist()
            yield FnSession(lambda: usage_latency_ms(engine.completions.create(**completion_kwargs(prompt, workload)).usage), lambda: None)
        finally:
            engine.terminate()
