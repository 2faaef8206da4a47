"""Pure parts of the MLC-LLM flow: quantisation names, the three build commands, and usage-metric parsing.

Per shape: ``mlc_llm convert_weight`` (weights → MLC params), ``mlc_llm gen_config`` (``mlc-chat-config.json``),
``mlc_llm compile`` (model library). The engine's non-streaming completion reports ``usage.extra`` with
``ttft_s`` and ``decode_tokens_per_s`` (plus ``prefill_tokens_per_s``, ``end_to_end_latency_s``).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from profilers.workload import Workload

_QUANT = {"fp32": "q0f32", "fp16": "q0f16", "bf16": "q0bf16"}
_MLC_QUANT_RE = re.compile(r"^q\d+f\d+(_\d+)?$")


def quantization(workload: Workload) -> str:
    """MLC quantisation code of the workload dtype (``fp16`` → ``q0f16``; ``q4f16_1`` passes through)."""
    if workload.dtype in _QUANT:
        return _QUANT[workload.dtype]
    if _MLC_QUANT_RE.match(workload.dtype):
        return workload.dtype
    raise ConfigError(f"mlc_llm: unsupported dtype {workload.dtype!r} (fp32, fp16, bf16 or an MLC code like q4f16_1)")


@dataclass(frozen=True)
class BuildPlan:
    """The three commands that turn an HF shape directory into an MLC model dir + library."""

    convert_weight: list[str]
    gen_config: list[str]
    compile: list[str]
    out_dir: Path
    model_lib: Path

    def commands(self) -> list[list[str]]:
        return [self.convert_weight, self.gen_config, self.compile]


def build_plan(hf_dir: Path, out_dir: Path, workload: Workload, device: str, python: str = sys.executable) -> BuildPlan:
    """Commands for one shape: context window = prompt + gen, prefill chunk = the whole prompt batch."""
    q = quantization(workload)
    mlc = [python, "-m", "mlc_llm"]
    lib = out_dir / f"lib-{q}-{device.replace(':', '')}.so"
    return BuildPlan(
        convert_weight=[*mlc, "convert_weight", str(hf_dir), "--quantization", q, "--device", device, "-o", str(out_dir)],
        gen_config=[*mlc, "gen_config", str(hf_dir), "--quantization", q, "--conv-template", "LM",
                    "--context-window-size", str(workload.context_len), "--prefill-chunk-size", str(workload.batch * workload.prompt_len),
                    "--max-batch-size", str(workload.batch), "-o", str(out_dir)],
        compile=[*mlc, "compile", str(out_dir / "mlc-chat-config.json"), "--device", device, "-o", str(lib)],
        out_dir=out_dir,
        model_lib=lib,
    )


def completion_kwargs(prompt_ids: list[int], workload: Workload) -> dict[str, Any]:
    """Arguments of ``MLCEngine.completions.create``: token-id prompt, exactly ``gen_len`` greedy tokens."""
    return {"prompt": prompt_ids, "max_tokens": workload.gen_len, "temperature": 0.0, "stream": False,
            "extra_body": {"debug_config": {"ignore_eos": True}}}


def usage_latency_ms(usage: Any) -> tuple[float, float]:
    """(ttft_ms, tpot_ms) from a completion's ``usage`` (object or dict); TPOT = 1 / decode tokens per second."""
    extra = usage.get("extra") if isinstance(usage, dict) else getattr(usage, "extra", None)
    if not isinstance(extra, dict):
        raise ConfigError("mlc_llm usage has no 'extra' metrics (is the engine recent enough to report them?)")
    missing = [k for k in ("ttft_s", "decode_tokens_per_s") if k not in extra]
    if missing:
        raise ConfigError(f"mlc_llm usage.extra lacks {', '.join(missing)}")
    rate = float(extra["decode_tokens_per_s"])
    if rate <= 0:
        raise ConfigError(f"mlc_llm usage.extra.decode_tokens_per_s must be > 0, got {rate}")
    return float(extra["ttft_s"]) * 1e3, 1e3 / rate
