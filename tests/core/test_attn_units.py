"""Attention units (whole KV groups, or query heads inside every KV group) and per-model width ladders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from core.elastic.model import ElasticModel
from core.errors import ConfigError, StrategyError
from core.export.writer import export_subnet
from core.model.loader import ModelInfo
from core.spec import ShapeSpace, SubnetSpec, format_width
from core.strategy.calibrate import CalibrationConfig, calibrate
from core.strategy.schema import Strategy, naive_strategy
from core.strategy.units import default_attn_ladder, default_ffn_ladder, heads_of_units, kept_heads, width_ladder
from core.strategy.width import ChannelStatsRecorder, select_widths
from tests.conftest import make_tiny

SMOL = ModelInfo("llama", 30, 576, 9, 3, 64, 1536, 49152, True, False, 8192)  # SmolLM2-135M's dims
TINY = ModelInfo("llama", 12, 256, 16, 8, 16, 768, 8192, True, False, 512)  # the bundled tiny base


def test_ladders_follow_the_unit_counts() -> None:
    assert default_attn_ladder(SMOL, "kv_group") == default_attn_ladder(SMOL, "q_head") == (1.0, 0.666667, 0.333333)
    assert default_ffn_ladder(SMOL) == (1.0, 0.875, 0.75, 0.625)  # 1536, 1344, 1152, 960 channels: multiples of 64
    assert default_attn_ladder(TINY, "kv_group") == (1.0, 0.875, 0.75, 0.625)
    assert default_attn_ladder(TINY, "q_head") == (1.0, 0.5)
    assert width_ladder(16) == (1.0, 0.875, 0.75, 0.625) and width_ladder(1) == (1.0,)


def test_two_thirds_round_trips_through_its_key() -> None:
    space = ShapeSpace(30, 15, (1.0, 0.75), attn_widths="1,2/3,1/3")
    spec = SubnetSpec(20, 2 / 3, 0.75)
    assert spec.key == "L20-a0.666667-f0.75" and SubnetSpec.parse(spec.key) == spec
    assert space.validate(spec.key) == spec and spec in space and SubnetSpec(20, 0.75, 0.75) not in space
    assert space.smallest == SubnetSpec(15, 1 / 3, 0.75) and len(space) == 16 * 3 * 2 == len(list(space))
    with pytest.raises(ConfigError, match="attn_width 0.5 not in the width ladder"):
        space.validate("L20-a0.5-f1")
    assert ShapeSpace(**space.to_dict()) == space and "attn_widths" not in ShapeSpace(4, 2).to_dict()


def test_kept_heads_per_unit() -> None:
    assert kept_heads(SMOL, 2 / 3, "kv_group") == (6, 2) and kept_heads(SMOL, 2 / 3, "q_head") == (6, 3)
    assert kept_heads(SMOL, 1 / 3, "q_head") == (3, 3) and kept_heads(SMOL, 1.0, "q_head") == (9, 3)
    assert heads_of_units((0, 2), SMOL, "kv_group") == ((0, 1, 2, 6, 7, 8), (0, 2))
    assert heads_of_units((1, 3, 8), SMOL, "q_head") == ((1, 3, 8), (0, 1, 2))
    with pytest.raises(ConfigError, match="3 KV groups"):
        heads_of_units((0, 1, 3), SMOL, "q_head")


def _q_head_strategy(model) -> Strategy:  # noqa: ANN001
    """Tiny 6 heads over 2 KV groups (3 per group): ladder 1, 2/3, 1/3 of query heads, non-prefix heads kept."""
    info = ModelInfo.from_config(model.config)
    st = naive_strategy(info, "sha", 2, (1.0, 0.5), attn_widths=(1.0, 2 / 3, 1 / 3), attn_unit="q_head")
    st.attn[format_width(2 / 3)] = tuple(((0, 2, 3, 5), (1, 2, 4, 5), (0, 1, 3, 4), (0, 2, 4, 5))[i] for i in range(info.num_layers))
    st.attn[format_width(1 / 3)] = tuple(((2, 3), (1, 5), (0, 4), (1, 3))[i] for i in range(info.num_layers))
    g = torch.Generator().manual_seed(3)
    for i in range(info.num_layers):
        st.biases[f"attn.{format_width(2 / 3)}.{i}"] = torch.randn(info.hidden_size, generator=g) * 0.2
    st.validate()
    return st


@pytest.mark.parametrize("shape", ["L4-a0.666667-f1", "L3-a0.333333-f0.5", "L2-a1-f0.5"])
def test_q_head_shapes_export_with_parity(tmp_path: Path, shape: str) -> None:
    model = make_tiny("llama", hidden=96, heads=6, kv=2)
    em = ElasticModel(model, _q_head_strategy(model))
    res = export_subnet(em, shape, tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    q, kv = kept_heads(em.info, SubnetSpec.parse(shape).attn_width, "q_head")
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (q, kv)
    stock = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
    assert res.num_parameters == sum(p.numel() for p in stock.parameters())
    ids = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(0))
    em.set_shape(shape)
    with torch.no_grad():
        torch.testing.assert_close(stock(input_ids=ids).logits, em(ids), rtol=1e-5, atol=1e-5)
    em.set_shape("L4-a1-f1")
    with torch.no_grad():
        torch.testing.assert_close(em(ids), model(input_ids=ids).logits, rtol=1e-5, atol=1e-5)  # full width restored


def test_q_head_selection_keeps_the_best_heads_of_every_group() -> None:
    model = make_tiny("llama", hidden=96, heads=6, kv=2)
    em = ElasticModel(model)
    ids = torch.randint(0, 97, (4, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), ChannelStatsRecorder(em) as rec:
        em(ids)
    sel = select_widths(em, rec.stats, (1.0, 0.5), attn_widths=(1.0, 2 / 3, 1 / 3), attn_unit="q_head", bias_modules=("attn",))
    for layer in sel.attn[format_width(1 / 3)]:
        assert len(layer) == 2 and {h // 3 for h in layer} == {0, 1}
    assert all(len(x) == 4 for x in sel.attn[format_width(2 / 3)]) and set(sel.biases) >= {"attn.0.333333.0", "attn.0.666667.3"}
    with pytest.raises(ConfigError, match="global allocation needs kv_group"):
        select_widths(em, rec.stats, (1.0, 0.5), attn_unit="q_head", allocation="global")


def test_strategy_round_trip_and_bad_unit(tmp_path: Path) -> None:
    model = make_tiny("llama", hidden=96, heads=6, kv=2)
    st = _q_head_strategy(model)
    back = Strategy.load(st.save(tmp_path / "st"))
    assert back.attn_unit == "q_head" and back.space == st.space and back.attn == st.attn
    d = json.loads((tmp_path / "st" / "strategy.json").read_text())
    d["attn_unit"] = "half_heads"
    (tmp_path / "st" / "strategy.json").write_text(json.dumps(d))
    with pytest.raises(StrategyError, match="unknown attention unit 'half_heads'"):
        Strategy.load(tmp_path / "st")


def test_calibrate_q_head_and_reuse_depth() -> None:
    model = make_tiny("llama", layers=4, hidden=96, heads=6, kv=2)
    info = ModelInfo.from_config(model.config)
    tokens = torch.randint(0, 97, (8 * 16,), generator=torch.Generator().manual_seed(2))
    base = CalibrationConfig(min_layers=2, window=16, batch_size=4)
    first = calibrate(model, info, "sha", tokens, base)
    assert first.space.attn_ladder == (1.0, 0.5) and first.space.widths == (1.0, 0.875, 0.75, 0.625)  # 2 groups; 128 channels / 8
    cfg = CalibrationConfig(min_layers=2, window=16, batch_size=4, attn_unit="q_head")
    again = calibrate(model, info, "sha", tokens, cfg, reuse_depth=first)
    assert again.attn_unit == "q_head" and again.depth == first.depth and again.space.attn_ladder == (1.0, 0.666667, 0.333333)
    assert again.meta["dp_evaluations"] == first.meta["dp_evaluations"] and "depth_reused_from" in again.meta
    with pytest.raises(StrategyError, match="calibrated on other tokens"):
        calibrate(model, info, "sha", tokens[16:], cfg, reuse_depth=first)


def test_search_space_uses_the_attention_ladder() -> None:
    """Regression: UniformSpace enumerated the MLP ladder for attention too (256 shapes instead of 192 on SmolLM2's
    ladders, so the shipped accuracy table seeded only the a1 third of the space)."""
    from core.search.shapes import UniformSpace

    sp = ShapeSpace(30, 15, (1.0, 0.875, 0.75, 0.625), (1.0, 2 / 3, 1 / 3))
    shapes = list(UniformSpace(sp))
    assert len(shapes) == len(UniformSpace(sp)) == len(sp) == 192
    assert {s.key for s in shapes} == {s.key for s in sp}
