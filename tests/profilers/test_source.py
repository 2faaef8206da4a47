"""Shapes from a base config (export's rounding and architecture) and from a real exported subnet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.errors import ConfigError, UnsupportedModelError
from core.spec import SubnetSpec
from profilers.base import MeasureSettings
from profilers.dims import ShapeDims
from profilers.registry import get_profiler
from profilers.source import ModelSource
from profilers.workload import Workload
from tests.conftest import make_tiny

CPU_ENGINES = ("torch", "onnxruntime") + (("llamacpp",) if get_profiler("llamacpp").available() else ())


def test_config_shapes_use_export_rounding_and_biases(tiny_base: Path) -> None:
    src = ModelSource.open(tiny_base)
    assert src.kind == "config" and src.kept(SubnetSpec(3, 0.5, 0.75)) == (1, 96)
    cfg = src.shape_config(SubnetSpec(3, 0.5, 0.75))
    assert (cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.intermediate_size) == (3, 1, 96)
    assert cfg.attention_bias and cfg.mlp_bias
    full = src.shape_config(SubnetSpec(4))
    assert not full.attention_bias and not full.mlp_bias
    none = ModelSource.open(tiny_base, bias_modules=()).shape_config(SubnetSpec(3, 0.5, 0.75))
    assert not none.mlp_bias and not none.attention_bias
    with pytest.raises(ConfigError, match="exceed"):
        src.kept(SubnetSpec(5))


def test_exported_subnet_is_measured_as_its_own_shape(tmp_path: Path) -> None:
    from core.elastic.model import ElasticModel
    from core.export.writer import export_subnet
    from core.model.loader import ModelInfo
    from core.strategy.schema import naive_strategy

    model = make_tiny("llama", layers=4, hidden=64, heads=4, kv=2, inter=128)
    info = ModelInfo.from_config(model.config)
    em = ElasticModel(model, naive_strategy(info, "sha", min_layers=2, widths=(1.0, 0.5, 0.75)))
    out = tmp_path / "sub"
    export_subnet(em, "L3-a0.5-f0.75", out)
    src = ModelSource.open(out)
    assert src.kind == "exported" and src.exported_shape == SubnetSpec(3, 0.5, 0.75)
    assert src.info.num_layers == 4 and src.kept(SubnetSpec(3, 0.5, 0.75)) == (1, 96)
    assert src.facts().source == "exported"
    with pytest.raises(ConfigError, match="exported subnet"):
        src.kept(SubnetSpec(4))
    for engine in CPU_ENGINES:  # llamacpp (where installed): the exported weights written as a GGUF subnet
        row = get_profiler(engine, MeasureSettings(warmup=0, repetitions=1, busy_retries=0)).measure(src, SubnetSpec(3, 0.5, 0.75), Workload(1, 6, 3))
        assert row.shape == "L3-a0.5-f0.75" and (row.kv_groups, row.ffn_channels) == (1, 96)


def test_bad_card_is_refused(tmp_path: Path, tiny_base: Path) -> None:
    import shutil

    d = tmp_path / "m"
    shutil.copytree(tiny_base, d)
    (d / "amoeba_subnet.json").write_text(json.dumps({"nope": 1}))
    with pytest.raises(UnsupportedModelError, match="needs 'shape'"):
        ModelSource.open(d)
    (d / "amoeba_subnet.json").write_text(json.dumps({"shape": "L3-a1-f1"}))
    with pytest.raises(UnsupportedModelError, match="3 layers, config.json has 4"):
        ModelSource.open(d)


def test_exported_granite_subnet_with_bias_is_measured(tmp_path: Path) -> None:
    """3 of 4 heads over hidden 64 with an o_proj compensation bias exports as Granite: still profilable."""
    import json

    import torch

    from core.elastic.model import ElasticModel
    from core.export.writer import export_subnet
    from core.model.loader import ModelInfo
    from core.strategy.schema import naive_strategy

    model = make_tiny("llama", layers=4, hidden=64, heads=4, kv=4, inter=128)
    info = ModelInfo.from_config(model.config)
    st = naive_strategy(info, "sha", min_layers=2, widths=(1.0, 0.75))
    st.biases = {f"attn.0.75.{i}": torch.randn(64) for i in range(4)}
    out = tmp_path / "sub"
    export_subnet(ElasticModel(model, st), "L4-a0.75-f1", out)
    assert json.loads((out / "config.json").read_text())["model_type"] == "granite"
    src = ModelSource.open(out)
    assert src.exported_shape == SubnetSpec(4, 0.75, 1.0) and src.kept(SubnetSpec(4, 0.75, 1.0)) == (3, 128)
    row = get_profiler("torch", MeasureSettings(warmup=0, repetitions=1, busy_retries=0)).measure(src, SubnetSpec(4, 0.75, 1.0), Workload(1, 6, 3))
    assert row.shape == "L4-a0.75-f1"


def test_config_shapes_take_the_bias_modules_of_the_models_strategy(tiny_base: Path, tmp_path: Path) -> None:
    """A strategy compensating attention only exports Llama-with-attention-bias shapes; the profiled config must match."""
    import shutil

    from core.model.loader import load_base_model, weights_sha256
    from core.strategy.calibrate import CalibrationConfig, calibrate

    d = tmp_path / "base"
    shutil.copytree(tiny_base, d)
    hf, info = load_base_model(d)
    ids = torch.randint(0, info.vocab_size, (2048,)).tolist()
    st = calibrate(hf, info, weights_sha256(d), ids, CalibrationConfig(min_layers=2, widths=(1, 0.5), window=16, num_windows=4, bias_modules=("attn",)))
    st.save(d / "strategy")
    assert st.bias_modules == ("attn",)
    src = ModelSource.open(d)
    assert src.bias_modules == ("attn",)
    cfg = src.shape_config(SubnetSpec(3, 0.5, 0.5))
    assert cfg.attention_bias and not cfg.mlp_bias
    assert ModelSource.open(d, bias_modules=["ffn"]).shape_config(SubnetSpec(3, 0.5, 0.5)).mlp_bias
    with pytest.raises(ConfigError, match="bad bias modules"):
        ModelSource.open(d, bias_modules=["mlp"])


def test_query_head_unit_is_taken_from_the_strategy_and_shapes_get_the_right_heads(tmp_path: Path) -> None:
    """A q_head strategy keeps every KV head and prunes query heads inside each group; config-only shapes, rows
    and exported subnets all say so."""
    from core.elastic.model import ElasticModel
    from core.export.writer import export_subnet
    from core.model.loader import ModelInfo
    from core.strategy.schema import naive_strategy

    model = make_tiny("llama", layers=4, hidden=64, heads=4, kv=2, inter=128)
    info = ModelInfo.from_config(model.config)
    d = tmp_path / "base"
    model.save_pretrained(str(d))
    st = naive_strategy(info, "sha", min_layers=2, widths=(1.0, 0.75), attn_widths=(1.0, 0.5), attn_unit="q_head")
    st.save(d / "strategy")
    src = ModelSource.open(d)
    assert src.attn_unit == "q_head" and src.attn_ladder() == (1.0, 0.5)
    assert src.dims(SubnetSpec(3, 0.5, 0.75)) == ShapeDims(3, 2, 96, 2)
    cfg = src.shape_config(SubnetSpec(3, 0.5, 0.75))
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size) == (2, 2, 96)
    kv = ModelSource.open(d, attn_unit="kv_group")
    assert kv.dims(SubnetSpec(3, 0.5, 0.75)) == ShapeDims(3, 1, 96, 2)
    assert kv.shape_config(SubnetSpec(3, 0.5, 0.75)).num_key_value_heads == 1
    with pytest.raises(ConfigError, match="unknown attention unit"):
        ModelSource.open(d, attn_unit="head")
    settings = MeasureSettings(warmup=0, repetitions=1, busy_retries=0)
    for engine in CPU_ENGINES:
        row = get_profiler(engine, settings).measure(src, SubnetSpec(3, 0.5, 0.75), Workload(1, 6, 3))
        assert (row.q_heads, row.kv_groups, row.ffn_channels) == (2, 2, 96)
    out = tmp_path / "sub"
    export_subnet(ElasticModel(model, st), "L3-a0.5-f0.75", out)
    sub = ModelSource.open(out)
    assert sub.attn_unit == "q_head" and sub.dims(SubnetSpec(3, 0.5, 0.75)) == ShapeDims(3, 2, 96, 2)
    row = get_profiler("torch", settings).measure(sub, SubnetSpec(3, 0.5, 0.75), Workload(1, 6, 3))
    assert (row.q_heads, row.kv_groups) == (2, 2)


def test_weights_cache_returns_the_same_random_weights(tiny_base: Path, tmp_path: Path) -> None:
    import dataclasses

    src = dataclasses.replace(ModelSource.open(tiny_base), weights_cache=tmp_path / "cache")
    a = src.build_torch(SubnetSpec(3, 0.5, 0.75), torch.float32)
    assert len(list((tmp_path / "cache").iterdir())) == 1
    b = src.build_torch(SubnetSpec(3, 0.5, 0.75), torch.float32)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    c = src.build_torch(SubnetSpec(2), torch.float32)
    assert c.config.num_hidden_layers == 2 and len(list((tmp_path / "cache").iterdir())) == 2


def test_torch_prepare_fills_the_weights_cache_before_any_timing(tiny_base: Path, tmp_path: Path) -> None:
    """Built lazily on first open, the cache's writes overlapped the first timed pass (SmolLM2: pass A 11-14 % slower)."""
    import dataclasses

    src = dataclasses.replace(ModelSource.open(tiny_base), weights_cache=tmp_path / "cache")
    prof = get_profiler("torch", MeasureSettings(warmup=0, repetitions=1, busy_retries=0))
    (tmp_path / "work").mkdir()
    assert prof.prepare(src, SubnetSpec(3, 0.5, 0.75), Workload(1, 6, 3), tmp_path / "work") is None
    assert [(p / "config.json").is_file() for p in (tmp_path / "cache").iterdir()] == [True]
