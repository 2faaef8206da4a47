"""``onnxruntime_genai``: the ONNX Runtime GenAI stack (its model builder + ``Generator`` with its own KV cache).

Per shape: write the HF directory (random weights; a word-level tokenizer when the source has none, which
the builder insists on), run ``python -m onnxruntime_genai.models.builder -p fp32 -e cpu``, pin the session
threads in ``genai_config.json``, then time it: TTFT = ``append_tokens`` (prefill) + the first ``generate_next_token``
(sampling from the prefill logits); TPOT = each further ``generate_next_token`` (one cached forward + sampling).
Optional dependency: ``pip install onnxruntime-genai`` (it also needs ``onnx-ir``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.spec import SubnetSpec
from profilers.base import Profiler, Session
from profilers.errors import ProfilerUnavailable
from profilers.source import ModelSource
from profilers.table import EngineFacts
from profilers.timing import FnSession, RssProbe
from profilers.workload import Workload

_PRECISION = {"fp32": "fp32", "fp16": "fp16", "int4": "int4"}


def builder_command(hf_dir: Path, out_dir: Path, workload: Workload, device: str = "cpu", python: str = sys.executable) -> list[str]:
    """The GenAI model-builder command for one shape directory."""
    if workload.dtype not in _PRECISION:
        raise ConfigError(f"onnxruntime_genai: unsupported dtype {workload.dtype!r} (supported: {', '.join(_PRECISION)})")
    return [python, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir), "-o", str(out_dir),
            "-p", _PRECISION[workload.dtype], "-e", "cuda" if device.startswith("cuda") else "cpu"]


def pin_threads(genai_config: Path, threads: int) -> None:
    """Set the decoder session's intra/inter-op threads in ``genai_config.json``."""
    cfg = json.loads(genai_config.read_text())
    so = cfg["model"]["decoder"].setdefault("session_options", {})
    so.update(intra_op_num_threads=threads, inter_op_num_threads=1)
    genai_config.write_text(json.dumps(cfg, indent=1))


def write_word_tokenizer(out: Path, vocab_size: int) -> None:
    """A word-level tokenizer ``t0 … t{V-1}`` (token ids are all the profiler uses)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab={f"t{i}": i for i in range(vocab_size)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", bos_token="t1", eos_token="t2").save_pretrained(str(out))


class OrtGenAiProfiler(Profiler):
    """``onnxruntime_genai``: GenAI builder graph (GroupQueryAttention, shared KV buffer) and its generator loop."""

    name = "onnxruntime_genai"
    dtypes = tuple(_PRECISION)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        for mod in ("onnxruntime_genai", "onnx_ir"):
            if importlib.util.find_spec(mod) is None:
                return f"{mod} is not installed (pip install onnxruntime-genai onnx-ir)"
        return None

    def engine_facts(self, workload: Workload) -> EngineFacts:
        import onnxruntime_genai as og

        return EngineFacts(name=self.name, version=str(getattr(og, "__version__", "unknown")), dtype=workload.dtype,
                           device=self.settings.device, build_flags={"builder": "onnxruntime_genai.models.builder",
                                                                     "intra_op_threads": str(self.settings.threads)})

    def prepare(self, source: ModelSource, spec: SubnetSpec, workload: Workload, workdir: Path) -> Any:
        """Run the GenAI builder on the shape's HF directory once; returns the ONNX output directory."""
        reason = self.unavailable_reason()
        if reason:
            raise ProfilerUnavailable(f"onnxruntime_genai unavailable: {reason}")
        self.check_workload(workload)
        hf = source.write_shape_dir(spec, workdir / "hf", weights=True)
        if not (hf / "tokenizer.json").is_file() and not (hf / "tokenizer.model").is_file():
            if hf == source.path:
                raise ConfigError(f"{hf} has no tokenizer; the GenAI builder needs one")
            write_word_tokenizer(hf, source.info.vocab_size)
        out = workdir / "onnx"
        res = subprocess.run(builder_command(hf, out, workload, self.settings.device), capture_output=True, text=True)
        if res.returncode != 0:
            raise ConfigError(f"onnxruntime_genai builder failed for {spec.key}: {res.stderr.strip()[-400:]}")
        pin_threads(out / "genai_config.json", self.settings.threads)
        return out

    @contextlib.contextmanager
    def open(self, source: ModelSource, spec: SubnetSpec, workload: Workload, prepared: Any) -> Iterator[Session]:
        import numpy as np
        import onnxruntime_genai as og

        probe = RssProbe()
        model: Any = og.Model(str(prepared))
        probe.rearm()
        ids = np.random.default_rng(0).integers(0, source.info.vocab_size, (workload.batch, workload.prompt_len)).astype(np.int32)

        def generate() -> tuple[float, float]:
            params = og.GeneratorParams(model)
            params.set_search_options(max_length=workload.context_len, min_length=workload.context_len, do_sample=False)
            gen = og.Generator(model, params)
            t0 = time.perf_counter()
            gen.append_tokens(ids)  # prefill forward
            gen.generate_next_token()  # first token from the prefill logits
            t1 = time.perf_counter()
            for _ in range(workload.gen_len - 1):
                gen.generate_next_token()  # one cached decode forward + sampling
            t2 = time.perf_counter()
            produced = len(gen.get_sequence(0)) - workload.prompt_len
            if produced != workload.gen_len:
                raise ConfigError(f"onnxruntime_genai generated {produced} tokens, expected {workload.gen_len}")
            return (t1 - t0) * 1e3, (t2 - t1) * 1e3 / (workload.gen_len - 1)

        yield FnSession(generate, probe.peak_mb)
