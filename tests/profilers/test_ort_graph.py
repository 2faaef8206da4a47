"""The ONNX Runtime flow computes the same function as the torch model, with a working KV cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.spec import SubnetSpec
from profilers.plugins.ort.graph import build_decoder
from profilers.plugins.ort.profiler import make_session
from profilers.source import ModelSource
from tests.conftest import make_tiny


def _ort_logits(sess, ids: np.ndarray, dims, past=None, start: int = 0):
    b = ids.shape[0]
    names = [f"past_{t}_{i}" for i in range(dims.num_layers) for t in ("key", "value")]
    if past is None:
        past = [np.zeros((b, dims.num_kv_heads, 0, dims.head_dim), np.float32)] * len(names)
    feeds = {"input_ids": ids, "position_ids": np.broadcast_to(np.arange(start, start + ids.shape[1]), ids.shape).copy()}
    feeds.update(zip(names, past, strict=True))
    out = sess.run(None, feeds)
    return out[0], out[1:]


def _check(model) -> None:
    onnx_bytes, dims = build_decoder(model, 64)
    sess = make_session(onnx_bytes, 1)
    ids = np.random.default_rng(1).integers(0, model.config.vocab_size, size=(2, 9), dtype=np.int64)
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(ids), use_cache=True)
    logits, past = _ort_logits(sess, ids, dims)
    np.testing.assert_allclose(logits[:, -1], ref.logits[:, -1].numpy(), atol=2e-4, rtol=1e-3)
    assert past[0].shape == (2, dims.num_kv_heads, 9, dims.head_dim)
    nxt = ref.logits[:, -1].argmax(-1, keepdim=True)
    with torch.no_grad():
        ref2 = model(input_ids=nxt, cache=ref.cache, use_cache=True)
    logits2, past2 = _ort_logits(sess, nxt.numpy(), dims, past, start=9)
    np.testing.assert_allclose(logits2[:, -1], ref2.logits[:, -1].numpy(), atol=2e-4, rtol=1e-3)
    assert past2[0].shape[2] == 10


@pytest.mark.parametrize(("kind", "tied"), [("llama", False), ("llama", True), ("qwen2", False), ("mistral", False)])
def test_graph_matches_torch_prefill_and_cached_decode(kind: str, tied: bool) -> None:
    _check(make_tiny(kind, layers=2, tied=tied))


def test_graph_matches_torch_for_biased_and_granite_shapes(tmp_path) -> None:
    d = tmp_path / "m"
    make_tiny("llama", layers=3, hidden=64, heads=4, kv=4, inter=96).save_pretrained(str(d))
    src = ModelSource.open(d)
    kinds = []
    for spec in (SubnetSpec(2, 0.75, 0.5), SubnetSpec(3, 0.5, 1.0)):  # 3 heads over hidden 64 → Granite; 2 heads → Llama with biases
        model = src.build_torch(spec, torch.float32)
        kinds.append(model.config.model_type)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("bias"):
                    p.normal_(0, 0.1)
        _check(model)
    assert kinds == ["granite", "llama"]
