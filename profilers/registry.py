"""Lazy registry of profiler plugins: name -> ``"module:Class"``, imported on first use."""

from __future__ import annotations

import importlib

from core.errors import ConfigError
from profilers.base import MeasureSettings, Profiler

PLUGINS: dict[str, str] = {
    "torch": "profilers.plugins.torch_eager:TorchProfiler",
    "onnxruntime": "profilers.plugins.ort.profiler:OrtProfiler",
    "onnxruntime_genai": "profilers.plugins.ort.genai:OrtGenAiProfiler",
    "tensorrt_llm": "profilers.plugins.trtllm.profiler:TrtLlmProfiler",
    "mlc_llm": "profilers.plugins.mlc.profiler:MlcProfiler",
    "llamacpp": "profilers.plugins.llamacpp.profiler:LlamaCppProfiler",
}


def names() -> list[str]:
    """Registered plugin names (nothing is imported)."""
    return sorted(PLUGINS)


def profiler_class(name: str) -> type[Profiler]:
    """Import and return the plugin class registered as ``name``."""
    target = PLUGINS.get(name)
    if target is None:
        raise ConfigError(f"unknown engine {name!r}; registered: {', '.join(names())}")
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Profiler)):
        raise ConfigError(f"plugin {name!r} ({target}) is not a Profiler subclass")
    return cls


def get_profiler(name: str, settings: MeasureSettings | None = None) -> Profiler:
    """An instance of plugin ``name`` (it may still be unavailable: check ``unavailable_reason()``)."""
    return profiler_class(name)(settings)
