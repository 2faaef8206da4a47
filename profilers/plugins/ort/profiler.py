"""``onnxruntime``: each shape exported by ``graph.build_decoder`` and run by an ORT CPU (or CUDA) session.

The KV cache stays in ``OrtValue``s between steps (``run_with_ort_values``): prefill fills it, every decode
step feeds one token and the previous ``present_*`` tensors back as ``past_*``.
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
from profilers.source import ModelSource
from profilers.table import EngineFacts
from profilers.timing import RssProbe, one_generation
from profilers.workload import Workload


def make_session(onnx_bytes: bytes | str, threads: int, device: str = "cpu") -> Any:
    """An ORT session with pinned intra-op threads, sequential execution and full graph optimisation."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
    return ort.InferenceSession(onnx_bytes, sess_options=so, providers=providers)


class OrtRunner:
    """Greedy generation over an ``amoeba_decoder`` session; state = (present OrtValues, next token, position)."""

    def __init__(self, session: Any, num_layers: int, num_kv_heads: int, head_dim: int, workload: Workload, vocab: int, seed: int = 0) -> None:
        import numpy as np
        import onnxruntime as ort

        self.np, self.ort, self.sess = np, ort, session
        self.batch, self.prompt_len = workload.batch, workload.prompt_len
        rng = np.random.default_rng(seed)
        self.ids = rng.integers(0, vocab, size=(self.batch, self.prompt_len), dtype=np.int64)
        self.kv_names = [f"past_{t}_{i}" for i in range(num_layers) for t in ("key", "value")]
        self.out_names = ["logits"] + [n.replace("past_", "present_") for n in self.kv_names]
        self.empty = np.zeros((self.batch, num_kv_heads, 0, head_dim), dtype=np.float32)

    def _run(self, ids: Any, start: int, past: list[Any]) -> Any:
        np, ov = self.np, self.ort.OrtValue
        pos = np.broadcast_to(np.arange(start, start + ids.shape[1], dtype=np.int64), ids.shape).copy()
        feeds = {"input_ids": ov.ortvalue_from_numpy(ids), "position_ids": ov.ortvalue_from_numpy(pos)}
        feeds.update(zip(self.kv_names, past, strict=True))
        outs = self.sess.run_with_ort_values(self.out_names, feeds)
        tok = outs[0].numpy()[:, -1].argmax(-1).astype(np.int64)[:, None]
        return outs[1:], tok, start + ids.shape[1]

    def prefill(self) -> Any:
        empty = self.ort.OrtValue.ortvalue_from_numpy(self.empty)
        return self._run(self.ids, 0, [empty] * len(self.kv_names))

    def decode(self, state: Any) -> Any:
        past, tok, pos = state
        return self._run(tok, pos, past)

    def sync(self) -> None:
        """``run_with_ort_values`` returns after the device work is done."""


class OrtProfiler(Profiler):
    """``onnxruntime``: opset-23 decoder graph (Attention with KV cache), ORT CPU provider, fp32."""

    name = "onnxruntime"
    dtypes = ("fp32",)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        for mod in ("onnxruntime", "onnx", "torch", "transformers"):
            if importlib.util.find_spec(mod) is None:
                return f"{mod} is not installed"
        return None

    def _check_device(self) -> None:
        import onnxruntime as ort

        if self.settings.device.startswith("cuda") and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ProfilerUnavailable("onnxruntime: CUDA requested but CUDAExecutionProvider is not available (install onnxruntime-gpu)")

    def engine_facts(self, workload: Workload) -> EngineFacts:
        import onnx
        import onnxruntime as ort

        self._check_device()
        flags = {"onnx": onnx.__version__, "opset": "23", "providers": ",".join(ort.get_available_providers()),
                 "graph_optimization": "ORT_ENABLE_ALL", "intra_op_threads": str(self.settings.threads), "kv_cache": "OrtValue past/present"}
        return EngineFacts(name=self.name, version=ort.__version__, dtype=workload.dtype, device=self.settings.device, build_flags=flags)

    def prepare(self, source: ModelSource, spec: SubnetSpec, workload: Workload, workdir: Path) -> Any:
        """The shape's decoder graph, written once to ``workdir`` (every round opens a session on the file)."""
        import torch

        from profilers.plugins.ort.graph import build_decoder

        self.check_workload(workload)
        self._check_device()
        model = source.build_torch(spec, torch.float32)
        max_pos = max(int(getattr(model.config, "max_position_embeddings", 0)), workload.context_len)
        onnx_bytes, dims = build_decoder(model, max_pos)
        del model
        path = workdir / "decoder.onnx"
        path.write_bytes(onnx_bytes)
        return path, dims

    @contextlib.contextmanager
    def open(self, source: ModelSource, spec: SubnetSpec, workload: Workload, prepared: Any) -> Iterator[Session]:
        path, dims = prepared
        probe = RssProbe()
        sess = make_session(str(path), self.settings.threads, self.settings.device)
        probe.rearm()
        runner = OrtRunner(sess, dims.num_layers, dims.num_kv_heads, dims.head_dim, workload, dims.vocab_size)
        yield _RunnerSession(runner, workload, probe)
        del sess


class _RunnerSession:
    """A ``Runner`` loop timed by ``one_generation``; peak RSS of the process since the session was opened."""

    def __init__(self, runner: Any, workload: Workload, probe: RssProbe) -> None:
        self.runner, self.workload, self.probe = runner, workload, probe

    def generate(self) -> tuple[float, float]:
        return one_generation(self.runner, self.workload.gen_len)

    def peak_mem_mb(self) -> float | None:
        return self.probe.peak_mb()
