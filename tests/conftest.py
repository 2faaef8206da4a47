"""Shared fixtures: tiny random Llama-family models saved as local HF directories."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.data.paths import has_shared_data


def make_tiny(
    kind: str = "llama", *, layers: int = 4, hidden: int = 64, heads: int = 4, kv: int = 2, inter: int = 128, vocab: int = 97, tied: bool = False, seed: int = 0
):
    """A tiny randomly initialised model of the given family (weights scaled up so slices matter)."""
    import transformers

    cls = {"llama": transformers.LlamaConfig, "mistral": transformers.MistralConfig, "qwen2": transformers.Qwen2Config}[kind]
    kwargs = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=128,
        tie_word_embeddings=tied,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=None,
    )
    if kind == "mistral":
        kwargs["sliding_window"] = None
    cfg = cls(**kwargs)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.08)
            elif n.endswith("bias"):
                p.normal_(0, 0.05)
    return model.eval()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests run single-threaded: with two threads on a shared 2-core machine, contention makes them far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    """A saved tiny GQA Llama (4 layers, 4 heads over 2 KV groups)."""
    m = make_tiny("llama")
    d = tmp_path / "tiny-llama"
    m.save_pretrained(str(d))
    return d


def pytest_collection_modifyitems(config, items):  # noqa: ANN001
    if has_shared_data():
        return
    skip = pytest.mark.skip(reason="../shared/data (corpus and eval sets) is absent; set AMOEBA_DATA_DIR to run")
    for item in items:
        if "data" in item.keywords:
            item.add_marker(skip)
