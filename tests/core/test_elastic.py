"""Elastic model: full shape equals the stock HF forward; width slicing equals masking."""

from __future__ import annotations

import pytest
import torch

from core.elastic.model import ElasticModel
from core.errors import ConfigError
from core.model.loader import ModelInfo
from core.spec import SubnetSpec
from core.strategy.schema import naive_strategy
from tests.conftest import make_tiny


@pytest.mark.parametrize("kind,heads,kv,tied", [("llama", 4, 4, False), ("llama", 4, 2, True), ("mistral", 4, 2, False), ("qwen2", 4, 2, True)])
def test_full_shape_matches_stock_hf(kind: str, heads: int, kv: int, tied: bool) -> None:
    stock = make_tiny(kind, heads=heads, kv=kv, tied=tied)
    ids = torch.randint(0, 97, (2, 11))
    with torch.no_grad():
        ref = stock(input_ids=ids).logits
        em = ElasticModel(make_tiny(kind, heads=heads, kv=kv, tied=tied))
        out = em(ids)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_width_slice_equals_masking() -> None:
    """Removing KV groups / MLP channels by slicing == zeroing their contribution in the dense model."""
    model = make_tiny("llama", heads=4, kv=2)
    info = ModelInfo.from_config(model.config)
    st = naive_strategy(info, "x", min_layers=2, widths=(1.0, 0.5))
    st.attn["0.5"] = tuple((1,) for _ in range(info.num_layers))
    st.ffn["0.5"] = tuple(tuple(range(0, 128, 2)) for _ in range(info.num_layers))
    em = ElasticModel(model, st)
    ids = torch.randint(0, 97, (1, 9))
    with torch.no_grad():
        em.set_shape(SubnetSpec(4, 0.5, 0.5))
        sliced = em(ids)
        em.set_shape(SubnetSpec(4, 1.0, 1.0))
        # mask: zero o_proj columns of group 0 (heads 0,1) and down_proj odd columns
        for i in range(4):
            lin = em.elastic_linears(i)
            lin["o_proj"].base.weight[:, :32] = 0
            lin["down_proj"].base.weight[:, 1::2] = 0
        masked = em(ids)
    torch.testing.assert_close(sliced, masked, rtol=1e-5, atol=1e-5)


def test_depth_runs_only_kept_layers() -> None:
    model = make_tiny("llama")
    info = ModelInfo.from_config(model.config)
    st = naive_strategy(info, "x", min_layers=2, widths=(1.0,))
    em = ElasticModel(model, st)
    em.set_shape("L2-a1-f1")
    assert em.active_layers == (0, 3)
    ids = torch.randint(0, 97, (1, 5))
    with torch.no_grad():
        h = em.embed(ids)
        ctx = em.context(h)
        ref = em.logits(em.run_layers(h, (0, 3), ctx))
        torch.testing.assert_close(em(ids), ref)


def test_bad_shapes_are_refused() -> None:
    model = make_tiny("llama")
    em = ElasticModel(model)
    with pytest.raises(ConfigError, match="needs a strategy"):
        em.set_shape("L3-a1-f1")
    st = naive_strategy(ModelInfo.from_config(model.config), "x", min_layers=2, widths=(1.0, 0.5))
    em2 = ElasticModel(make_tiny("llama"), st)
    with pytest.raises(ConfigError, match="outside"):
        em2.set_shape("L1-a1-f1")
    with pytest.raises(ConfigError, match="not in the width ladder"):
        em2.set_shape("L3-a0.75-f1")


def test_bf16_base_with_fp32_strategy_biases() -> None:
    """Strategy biases are stored in fp32; on a bf16 base they are cast, not a dtype error."""
    model = make_tiny("llama").to(torch.bfloat16)
    info = ModelInfo.from_config(model.config)
    st = naive_strategy(info, "x", min_layers=2, widths=(1.0, 0.5))
    for i in range(info.num_layers):
        st.biases[f"attn.0.5.{i}"] = torch.randn(info.hidden_size)
        st.biases[f"ffn.0.5.{i}"] = torch.randn(info.hidden_size)
    em = ElasticModel(model, st)
    em.set_shape("L3-a0.5-f0.5")
    with torch.no_grad():
        out = em(torch.randint(0, 97, (1, 5)))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_exported_architectures_are_accepted_only_when_asked() -> None:
    from transformers import GraniteConfig

    from core.errors import UnsupportedModelError

    cfg = GraniteConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=6,
                        num_key_value_heads=3, head_dim=16, attention_bias=True, mlp_bias=True)
    with pytest.raises(UnsupportedModelError, match="granite"):
        ModelInfo.from_config(cfg)
    info = ModelInfo.from_config(cfg, exported=True)
    assert (info.num_heads, info.num_kv_heads, info.head_dim, info.intermediate_size) == (6, 3, 16, 96)


def test_set_layer_widths_overrides_one_layer_and_validates() -> None:
    model = make_tiny("llama")
    info = ModelInfo.from_config(model.config)
    em = ElasticModel(model, naive_strategy(info, "x", min_layers=2, widths=(1.0, 0.5)))
    ids = torch.randint(0, 97, (1, 6))
    with torch.no_grad():
        em.set_shape("L4-a1-f1")
        full = em(ids)
        em.set_layer_widths({2: (1.0, 0.5)})
        assert em.elastic_linears(2)["down_proj"].in_idx is not None and em.elastic_linears(1)["down_proj"].in_idx is None
        assert not torch.allclose(em(ids), full)
    with pytest.raises(ConfigError, match="not in ladder"):
        em.set_layer_widths({0: (0.75, 1.0)})
    with pytest.raises(ConfigError, match="out of range"):
        em.set_layer_widths({9: (1.0, 1.0)})
