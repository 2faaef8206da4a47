"""Instant export: stock-loaded subnets reproduce the elastic model's logits; files are atomic and verified."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from core.elastic.model import ElasticModel
from core.errors import ConfigError, DataMissingError, UnsupportedModelError
from core.export.layers import LAYERS_FILE, load_exported
from core.export.manifest import ExportIntegrityError, artifact_id, verify_export
from core.export.writer import CARD_FILE, export_subnet
from core.model.loader import ModelInfo
from core.spec import SubnetSpec
from core.strategy.schema import Strategy, naive_strategy
from tests.conftest import make_tiny

torch.set_num_threads(1)
WIDTHS = (1.0, 0.75, 0.5)


def _strategy(model, *, attn_bias: bool = False, ffn_bias: bool = False, seed: int = 1) -> Strategy:
    """A hand-made strategy with non-prefix kept units (different per layer) and optional compensation biases."""
    info = ModelInfo.from_config(model.config)
    st = naive_strategy(info, "sha", min_layers=2, widths=WIDTHS)
    st.depth[3] = (0, 2, 3)
    g = torch.Generator().manual_seed(seed)
    kv, inter = info.num_kv_heads, info.intermediate_size
    for w in WIDTHS[1:]:
        nk, nf = max(1, int(w * kv)), int(w * inter)
        st.attn[str(w)] = tuple(tuple(sorted(torch.randperm(kv, generator=g)[:nk].tolist())) for _ in range(info.num_layers))
        st.ffn[str(w)] = tuple(tuple(sorted(torch.randperm(inter, generator=g)[:nf].tolist())) for _ in range(info.num_layers))
        for i in range(info.num_layers):
            if attn_bias:
                st.biases[f"attn.{w}.{i}"] = torch.randn(info.hidden_size, generator=g) * 0.2
            if ffn_bias:
                st.biases[f"ffn.{w}.{i}"] = torch.randn(info.hidden_size, generator=g) * 0.2
    st.validate()
    return st


def _assert_parity(em: ElasticModel, spec: str, out: Path, arch: str | None = None) -> None:
    ids = torch.randint(0, 97, (2, 13), generator=torch.Generator().manual_seed(0))
    res = export_subnet(em, spec, out)
    model, loading = cast(tuple[Any, dict], AutoModelForCausalLM.from_pretrained(str(out), output_loading_info=True))
    assert not any(loading[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), loading
    assert arch is None or res.architecture == arch
    assert res.num_parameters == sum(p.numel() for p in model.parameters())
    em.set_shape(spec)
    with torch.no_grad():
        ref = em(ids)
        got = model.eval()(input_ids=ids).logits
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


# (kind, heads, kv, tied, attn_bias, ffn_bias, {shape: expected architecture})
CASES = [
    ("llama", 4, 4, False, False, False, {"L4-a1-f1": "LlamaForCausalLM", "L3-a0.75-f0.5": "MistralForCausalLM", "L2-a0.5-f0.75": "LlamaForCausalLM"}),
    ("llama", 4, 2, True, True, False, {"L3-a0.5-f0.75": "LlamaForCausalLM", "L4-a1-f0.5": "LlamaForCausalLM"}),
    ("llama", 4, 4, True, True, True, {"L3-a0.75-f0.75": "GraniteForCausalLM", "L2-a0.5-f0.5": "LlamaForCausalLM"}),
    ("mistral", 4, 2, False, False, True, {"L3-a0.5-f0.5": "LlamaForCausalLM", "L2-a1-f0.75": "LlamaForCausalLM"}),
    ("mistral", 4, 4, True, False, True, {"L3-a0.75-f0.75": "GraniteForCausalLM"}),
    ("qwen2", 4, 2, True, True, True, {"L4-a1-f1": "LlamaForCausalLM", "L3-a0.5-f0.75": "LlamaForCausalLM"}),
    ("qwen2", 4, 4, False, False, False, {"L3-a0.75-f1": "GraniteForCausalLM", "L2-a0.5-f0.5": "LlamaForCausalLM"}),
]


@pytest.mark.parametrize("kind,heads,kv,tied,attn_bias,ffn_bias,shapes", CASES)
def test_stock_loaded_export_matches_elastic(tmp_path: Path, kind, heads, kv, tied, attn_bias, ffn_bias, shapes) -> None:
    model = make_tiny(kind, heads=heads, kv=kv, tied=tied)
    em = ElasticModel(model, _strategy(model, attn_bias=attn_bias, ffn_bias=ffn_bias))
    for spec, arch in shapes.items():
        _assert_parity(em, spec, tmp_path / spec, arch)
        cfg = json.loads((tmp_path / spec / "config.json").read_text())
        assert cfg["tie_word_embeddings"] is tied
        assert cfg["num_hidden_layers"] == SubnetSpec.parse(spec).num_layers


def test_compensation_bias_is_carried_not_dropped(tmp_path: Path) -> None:
    """The biases change the function (so parity above is not vacuous) and land in o_proj / down_proj."""
    model = make_tiny("llama", heads=4, kv=2)
    em = ElasticModel(model, _strategy(model, attn_bias=True, ffn_bias=True))
    ids = torch.randint(0, 97, (1, 7))
    with torch.no_grad():
        em.set_shape("L4-a0.5-f0.5")
        with_bias = em(ids)
        plain = ElasticModel(make_tiny("llama", heads=4, kv=2), _strategy(model))
        plain.set_shape("L4-a0.5-f0.5")
        assert (with_bias - plain(ids)).abs().max() > 1e-2
    export_subnet(em, "L4-a0.5-f0.5", tmp_path / "x")
    out = AutoModelForCausalLM.from_pretrained(str(tmp_path / "x"))
    st = em.strategy
    assert st is not None
    torch.testing.assert_close(out.model.layers[1].self_attn.o_proj.bias, st.biases["attn.0.5.1"])
    torch.testing.assert_close(out.model.layers[2].mlp.down_proj.bias, st.biases["ffn.0.5.2"])
    assert torch.count_nonzero(out.model.layers[0].self_attn.q_proj.bias) == 0


class HandLoRA:
    """A shape-dependent LoRA on one linear: ``scale(shape) · B A``; forward on slices, merge at full size."""

    def __init__(self, out_f: int, in_f: int, em: ElasticModel, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.A, self.B, self.em = torch.randn(3, in_f, generator=g) * 0.2, torch.randn(out_f, 3, generator=g) * 0.2, em

    def scale(self) -> float:
        noise = 1.0 if self.em.training else 0.0  # stands in for router noise: training only
        return 0.5 + 0.1 * self.em.spec.num_layers - 0.3 * self.em.spec.ffn_width + noise

    def __call__(self, x: torch.Tensor, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None) -> torch.Tensor:
        a = self.A if in_idx is None else self.A[:, in_idx]
        b = self.B if out_idx is None else self.B[out_idx]
        return self.scale() * (x @ a.T) @ b.T

    def full_delta_weight(self) -> torch.Tensor:
        return self.scale() * self.B @ self.A


@pytest.mark.parametrize("kind,kv", [("llama", 2), ("qwen2", 4)])
def test_merged_adapters_match_elastic(tmp_path: Path, kind: str, kv: int) -> None:
    model = make_tiny(kind, heads=4, kv=kv)
    em = ElasticModel(model, _strategy(model, attn_bias=True, ffn_bias=True))
    for i in range(4):
        for j, lin in enumerate(em.elastic_linears(i).values()):
            lin.delta = HandLoRA(lin.out_features, lin.in_features, em, seed=10 * i + j)
    em.eval()
    em.set_shape("L2-a1-f1")
    for spec in ("L4-a1-f1", "L3-a0.75-f0.5", "L2-a0.5-f0.75"):
        _assert_parity(em, spec, tmp_path / spec)
    em.set_shape("L2-a0.5-f0.5")
    em.train()
    export_subnet(em, "L3-a1-f1", tmp_path / "restore")
    assert em.spec.key == "L2-a0.5-f0.5" and em.training
    em.eval()
    _assert_parity(em, "L3-a1-f1", tmp_path / "restore2")
    torch.testing.assert_close(load_file(str(tmp_path / "restore" / "model.safetensors")), load_file(str(tmp_path / "restore2" / "model.safetensors")))


def test_unmergeable_adapter_is_an_error(tmp_path: Path) -> None:
    model = make_tiny("llama")
    em = ElasticModel(model, _strategy(model))
    em.elastic_linears(0)["up_proj"].delta = lambda x, i, o: torch.zeros(())  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="layer 0 up_proj.*full_delta_weight"):
        export_subnet(em, "L4-a1-f1", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_sliding_window_base_keeps_its_window(tmp_path: Path) -> None:
    model = make_tiny("mistral")
    model.config.sliding_window = 5
    em = ElasticModel(model, _strategy(model))
    _assert_parity(em, "L3-a0.5-f0.5", tmp_path / "sw", "MistralForCausalLM")
    assert json.loads((tmp_path / "sw" / "config.json").read_text())["sliding_window"] == 5
    biased = make_tiny("mistral")
    biased.config.sliding_window = 5
    with pytest.raises(UnsupportedModelError, match="sliding-window"):
        export_subnet(ElasticModel(biased, _strategy(biased, ffn_bias=True)), "L3-a0.5-f0.5", tmp_path / "sw2")


def test_per_layer_widths_export_and_reload(tmp_path: Path) -> None:
    model = make_tiny("llama", heads=4, kv=4, tied=True)
    st = _strategy(model, attn_bias=True)
    st.allocation = "global"
    st.attn["0.75"] = ((0, 1, 2), (1, 3), (0, 1, 2, 3), (2,))
    st.ffn["0.75"] = (tuple(range(96)), tuple(range(0, 128, 4)), tuple(range(64)), tuple(range(1, 128, 2)))
    em = ElasticModel(model, st)
    out = tmp_path / "global"
    res = export_subnet(em, "L3-a0.75-f0.75", out)
    layers = json.loads((out / LAYERS_FILE).read_text())["layers"]
    assert [x["num_attention_heads"] for x in layers] == [3, 4, 1] and res.architecture == "GraniteForCausalLM"
    with pytest.raises(RuntimeError):
        AutoModelForCausalLM.from_pretrained(str(out))
    loaded = load_exported(out)
    ids = torch.randint(0, 97, (2, 9))
    em.set_shape("L3-a0.75-f0.75")
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, em(ids), rtol=1e-5, atol=1e-5)
    assert json.loads((out / CARD_FILE).read_text())["per_layer"] is True


def test_card_manifest_and_verify(tmp_path: Path) -> None:
    model = make_tiny("llama")
    em = ElasticModel(model, _strategy(model))
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text('{"fake": 1}')
    (tok / "tokenizer_config.json").write_text("{}")
    out = tmp_path / "sub"
    res = export_subnet(em, "L3-a0.5-f0.75", out, tokenizer_dir=tok, source={"base": "m", "sha256": "abc"}, metrics={"ppl": 12.5})
    assert res.sha256 == artifact_id(out) and verify_export(out)
    card = json.loads((out / CARD_FILE).read_text())
    assert card["shape"] == "L3-a0.5-f0.75" and card["kept_layers"] == [0, 2, 3] and card["kept_kv_group_counts"] == [1, 1, 1]
    assert card["source"]["sha256"] == "abc" and card["metrics"] == {"ppl": 12.5} and card["strategy"]["meta"]["method"] == "naive"
    assert (out / "tokenizer.json").read_text() == '{"fake": 1}'
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert set(files) == {p.name for p in out.iterdir()} - {"manifest.json"}
    (out / "config.json").write_text((out / "config.json").read_text() + " ")
    with pytest.raises(ExportIntegrityError, match="config.json"):
        verify_export(out)
    export_subnet(em, "L3-a0.5-f0.75", out, overwrite=True)
    (out / "extra.txt").write_text("x")
    with pytest.raises(ExportIntegrityError, match="extra.txt is not in the manifest"):
        verify_export(out)
    (out / "extra.txt").unlink()
    (out / "generation_config.json").unlink()
    with pytest.raises(ExportIntegrityError, match="generation_config.json .* missing"):
        verify_export(out)
    with pytest.raises(DataMissingError, match="no tokenizer files"):
        export_subnet(em, "L3-a1-f1", tmp_path / "other", tokenizer_dir=tmp_path)


def test_atomic_and_no_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_tiny("llama")
    em = ElasticModel(model, _strategy(model))
    out = tmp_path / "exp" / "sub"
    out.mkdir(parents=True)
    first = export_subnet(em, "L2-a1-f1", out)  # an empty existing dir is fine
    with pytest.raises(ConfigError, match="not empty"):
        export_subnet(em, "L4-a1-f1", out)
    assert artifact_id(out) == first.sha256
    with pytest.raises(ConfigError, match="JSON"):
        export_subnet(em, "L4-a1-f1", out, metrics={"bad": object()}, overwrite=True)

    def boom(root: Path) -> dict:
        raise RuntimeError("disk full")

    monkeypatch.setattr("core.export.writer.build_manifest", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_subnet(em, "L4-a1-f1", out, overwrite=True)
    with pytest.raises(RuntimeError):
        export_subnet(em, "L4-a1-f1", tmp_path / "exp" / "new")
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["sub"]
    assert artifact_id(out) == first.sha256 and verify_export(out)
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2


def test_bad_shapes_and_bf16(tmp_path: Path) -> None:
    model = make_tiny("llama")
    em = ElasticModel(model, _strategy(model))
    with pytest.raises(ConfigError, match="not in the width ladder"):
        export_subnet(em, "L3-a0.625-f1", tmp_path / "a")
    with pytest.raises(ConfigError, match="outside"):
        export_subnet(em, "L1-a1-f1", tmp_path / "b")
    with pytest.raises(ConfigError, match="needs a strategy"):
        export_subnet(ElasticModel(make_tiny("llama")), "L3-a1-f1", tmp_path / "c")
    res = export_subnet(em, "L2-a0.5-f0.5", tmp_path / "bf16", dtype=torch.bfloat16)
    loaded = AutoModelForCausalLM.from_pretrained(str(res.path))
    assert loaded.dtype == torch.bfloat16 and json.loads((res.path / CARD_FILE).read_text())["dtype"] == "bfloat16"
