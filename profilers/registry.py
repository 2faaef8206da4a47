"""The engine plugins: a lazy ``core.registry.Registry`` of ``Profiler`` subclasses (name → ``"module:Class"``)."""

from __future__ import annotations

from core.registry import Registry, subclass_of
from profilers.base import MeasureSettings, Profiler

PLUGINS: Registry[type[Profiler]] = Registry("engine", {
    "torch": "profilers.plugins.torch_eager:TorchProfiler",
    "onnxruntime": "profilers.plugins.ort.profiler:OrtProfiler",
    "onnxruntime_genai": "profilers.plugins.ort.genai:OrtGenAiProfiler",
    "tensorrt_llm": "profilers.plugins.trtllm.profiler:TrtLlmProfiler",
    "mlc_llm": "profilers.plugins.mlc.profiler:MlcProfiler",
    "llamacpp": "profilers.plugins.llamacpp.profiler:LlamaCppProfiler",
}, subclass_of(Profiler))


def names() -> list[str]:
    """Registered plugin names, sorted (nothing is imported)."""
    return sorted(PLUGINS.names())


def profiler_class(name: str) -> type[Profiler]:
    """Import and return the plugin class registered as ``name`` (``ConfigError`` listing the known names)."""
    return PLUGINS.load(name)


def get_profiler(name: str, settings: MeasureSettings | None = None) -> Profiler:
    """An instance of plugin ``name`` (it may still be unavailable: check ``unavailable_reason()``)."""
    return profiler_class(name)(settings)
