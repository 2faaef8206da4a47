"""GGUF writer (``core.export.gguf``): parity through transformers' GGUF loader, ``import_gguf`` and llama.cpp;
one-line refusals; ``amoeba export --format gguf``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import ConfigError, UnsupportedModelError
from core.export.gguf import llama_dims, permute_rotary, write_gguf, write_gguf_model
from tests.conftest import make_tiny

HAS_LLAMACPP = importlib.util.find_spec("llama_cpp") is not None
needs_llamacpp = pytest.mark.skipif(not HAS_LLAMACPP, reason="llama-cpp-python is not installed (optional extra 'llamacpp')")
IDS = [5, 17, 42, 99, 120, 250, 3, 8, 77, 199]
TEXT = "the quick brown fox, hello gguf"


def byte_level_tokenizer(vocab: int) -> object:
    """A tiny byte-level BPE (GPT-2 / SmolLM2 style) trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog " * 20, "hello world, amoeba subnet export to gguf"], trainer)
    return tok


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GQA Llama (2 layers, 4 heads over 2 KV groups) with a byte-level BPE tokenizer."""
    from transformers import PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("gguf") / "tiny"
    make_tiny("llama", layers=2, hidden=64, heads=4, kv=2, inter=128, vocab=300).save_pretrained(str(d))
    PreTrainedTokenizerFast(tokenizer_object=byte_level_tokenizer(300), unk_token="<unk>", bos_token="<s>", eos_token="</s>").save_pretrained(str(d))
    return d


def logits_of(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def test_f32_gguf_round_trips_through_transformers_and_import_gguf(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.model.gguf_import import import_gguf, inspect_gguf

    res = write_gguf(tiny_dir, tmp_path / "tiny-f32.gguf", dtype="f32")
    assert res.tensor_types == {"F32": 21} and res.tokenizer == "gpt2" and res.dropped_zero_biases == 0
    summary = inspect_gguf(res.path)
    assert summary.architecture == "llama" and summary.num_layers == 2
    ref = logits_of(AutoModelForCausalLM.from_pretrained(str(tiny_dir)).eval(), IDS)
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=res.path.name, dtype=torch.float32).eval()
    np.testing.assert_allclose(logits_of(hf, IDS), ref, atol=1e-5)  # rotary permutation undone exactly
    out = import_gguf(res.path, tmp_path / "imported")
    imported = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    np.testing.assert_allclose(logits_of(imported, IDS), ref, atol=1e-5)
    assert imported.config.num_key_value_heads == 2 and imported.config.num_attention_heads == 4
    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    back = AutoTokenizer.from_pretrained(str(out))
    assert back(TEXT)["input_ids"] == tok(TEXT)["input_ids"] and len(tok(TEXT)["input_ids"]) > 5


def test_f16_and_q8_0_types_and_error_stay_small(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    ref = logits_of(AutoModelForCausalLM.from_pretrained(str(tiny_dir)).eval(), IDS)
    for dtype, types, tol in (("f16", {"F16": 16, "F32": 5}, 0.01), ("q8_0", {"Q8_0": 16, "F32": 5}, 0.08)):
        res = write_gguf(tiny_dir, tmp_path / f"t-{dtype}.gguf", dtype=dtype)
        assert res.tensor_types == types
        got = logits_of(AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=res.path.name, dtype=torch.float32).eval(), IDS)
        assert np.abs(got - ref).max() < tol * np.abs(ref).max() and np.any(got != ref)


def test_rotary_permutation_pairs_halves_per_head() -> None:
    w = np.arange(8)[:, None] * np.ones((1, 3))  # 2 heads × head_dim 4: rows [0 1 | 2 3] [4 5 | 6 7]
    assert permute_rotary(w, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    with pytest.raises(UnsupportedModelError, match="rotary pairs"):
        permute_rotary(np.ones((6, 2)), 2)


def test_unsupported_architecture_tensor_type_and_dtype_are_one_line_errors(tmp_path: Path) -> None:
    import gguf
    from transformers import GPT2Config, GPT2LMHeadModel

    from core.model.gguf_import import inspect_gguf

    w = gguf.GGUFWriter(str(tmp_path / "falcon.gguf"), "falcon")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UnsupportedModelError, match="architecture 'falcon' is not supported") as e:
        inspect_gguf(tmp_path / "falcon.gguf")
    assert "\n" not in str(e.value)
    w = gguf.GGUFWriter(str(tmp_path / "iq.gguf"), "llama")
    w.add_block_count(1)
    w.add_tensor("blk.0.ffn_down.weight", np.zeros((1, 66), np.uint8), raw_dtype=gguf.GGMLQuantizationType.IQ2_XXS)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UnsupportedModelError, match="tensor type IQ2_XXS is not supported") as e:
        inspect_gguf(tmp_path / "iq.gguf")
    assert "\n" not in str(e.value)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    with pytest.raises(UnsupportedModelError, match="model type 'gpt2'"):
        write_gguf_model(gpt2, tmp_path / "g.gguf")
    with pytest.raises(ConfigError, match="unknown GGUF dtype 'q3'"):
        write_gguf_model(make_tiny(), tmp_path / "x.gguf", dtype="q3")
    cfg = make_tiny().config
    cfg.rope_parameters = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 2.0}
    with pytest.raises(UnsupportedModelError, match="rope type 'yarn'"):
        llama_dims(cfg)


def export_tiny(tmp_path: Path, shape: str, *, attn_unit: str = "kv_group", heads: int = 4, kv: int = 4, bias: bool = True) -> tuple[Path, Path]:
    """A tiny base + naive strategy (with random compensation biases) and its HF export of ``shape``."""
    from core.elastic.model import ElasticModel
    from core.export.writer import export_subnet
    from core.model.loader import ModelInfo
    from core.strategy.schema import naive_strategy

    model = make_tiny("llama", layers=4, hidden=64, heads=heads, kv=kv, inter=128, vocab=300, tied=True)
    info = ModelInfo.from_config(model.config)
    st = naive_strategy(info, "sha", min_layers=2, widths=(1.0, 0.75), attn_widths=(1.0, 0.75 if attn_unit == "kv_group" else 0.5), attn_unit=attn_unit)
    if bias:
        st.biases = {f"{m}.{w}.{i}": torch.randn(64) * 0.1 for m, w in (("attn", "0.75" if attn_unit == "kv_group" else "0.5"), ("ffn", "0.75"))
                     for i in range(4)}
    base = tmp_path / "base"
    model.save_pretrained(str(base))
    out = tmp_path / "hf"
    export_subnet(ElasticModel(model, st), shape, out)
    return base, out


@needs_llamacpp
@pytest.mark.parametrize("case", ["granite-biases", "q-head-units"])
def test_llama_cpp_matches_the_hf_export(tmp_path: Path, case: str) -> None:
    """3 of 4 heads over hidden 64 with o_proj / down_proj compensation biases exports as Granite; a q_head subnet keeps
    every KV head with fewer query heads: both load in llama.cpp's llama arch with the HF export's logits."""
    from core.export.gguf import parity

    if case == "granite-biases":
        _, hf = export_tiny(tmp_path, "L3-a0.75-f0.75")
        assert json.loads((hf / "config.json").read_text())["model_type"] == "granite"
    else:
        _, hf = export_tiny(tmp_path, "L3-a0.5-f0.75", attn_unit="q_head", heads=4, kv=2)
        cfg = json.loads((hf / "config.json").read_text())
        assert (cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (2, 2)
    res = write_gguf(hf, tmp_path / "sub.gguf", dtype="f32")
    assert res.dropped_zero_biases > 0 and res.tokenizer == "none"
    names = _tensor_names(res.path)
    assert "blk.0.attn_output.bias" in names and "blk.0.ffn_down.bias" in names and "blk.0.attn_q.bias" not in names
    p = parity(hf, res.path, IDS)
    assert p.relative < 2e-3 and p.argmax_agreement == 1.0  # llama.cpp keeps the KV cache in f16
    q = parity(hf, write_gguf(hf, tmp_path / "sub-q8.gguf", dtype="q8_0").path, IDS)
    assert q.relative < 0.08 and q.max_abs_diff > p.max_abs_diff


@needs_llamacpp
def test_q4_k_goes_through_llama_cpps_quantiser(tiny_dir: Path, tmp_path: Path) -> None:
    from core.export.gguf import llamacpp_logits

    big = tmp_path / "big"
    make_tiny("llama", layers=2, hidden=256, heads=4, kv=2, inter=512, vocab=300).save_pretrained(str(big))
    res = write_gguf(big, tmp_path / "q4.gguf", dtype="q4_k")
    assert res.tensor_types.get("Q4_K", 0) + res.tensor_types.get("Q6_K", 0) >= 8
    assert np.isfinite(llamacpp_logits(res.path, IDS)).all()


def test_per_layer_subnets_are_written_as_deci(tmp_path: Path) -> None:
    """Layers with different head / channel counts (global allocation): llama.cpp's llama arch would need one size,
    its deci arch takes per-layer head_count / head_count_kv / feed_forward_length arrays."""
    import gguf

    from core.elastic.model import ElasticModel
    from core.export.layers import load_exported
    from core.export.writer import export_subnet
    from core.model.loader import ModelInfo
    from core.strategy.schema import naive_strategy

    model = make_tiny("llama", layers=4, hidden=64, heads=4, kv=4, inter=128, vocab=300)
    st = naive_strategy(ModelInfo.from_config(model.config), "sha", min_layers=2, widths=(1.0, 0.5))
    st.attn["0.5"] = ((0, 1), (0,), (0, 1, 2), (1, 3))
    st.ffn["0.5"] = tuple(tuple(range(n)) for n in (64, 32, 96, 64))
    st.allocation = "global"
    st.biases = {f"{m}.0.5.{i}": torch.randn(64) * 0.1 for m in ("attn", "ffn") for i in range(4)}
    hf = tmp_path / "hf"
    export_subnet(ElasticModel(model, st), "L4-a0.5-f0.5", hf)
    assert json.loads((hf / "amoeba_subnet.json").read_text())["per_layer"]
    res = write_gguf(hf, tmp_path / "pl.gguf", dtype="f32")
    assert res.architecture == "deci"
    r = gguf.GGUFReader(str(res.path))
    heads = r.fields["deci.attention.head_count"]
    assert [int(heads.parts[i][0]) for i in heads.data] == [2, 1, 3, 2]
    ffn = r.fields["deci.feed_forward_length"]
    assert [int(ffn.parts[i][0]) for i in ffn.data] == [64, 32, 96, 64]
    if HAS_LLAMACPP:
        from core.export.gguf import llamacpp_logits

        ref = logits_of(load_exported(hf, verify=False), IDS)
        got = llamacpp_logits(res.path, IDS)
        assert np.abs(got - ref).max() < 2e-3 * np.abs(ref).max() and (got.argmax(-1) == ref.argmax(-1)).all()


def test_amoeba_export_format_gguf(tmp_path: Path) -> None:
    from core.model.loader import ModelInfo
    from core.strategy.schema import naive_strategy
    from tests.factories import run_cli

    base, _ = export_tiny(tmp_path, "L4-a1-f1", bias=False)
    from transformers import AutoConfig

    info = ModelInfo.from_config(AutoConfig.from_pretrained(str(base)))
    from core.model.loader import weights_sha256

    naive_strategy(info, weights_sha256(base), min_layers=2, widths=(1.0, 0.75)).save(base / "strategy")
    out = tmp_path / "s.gguf"
    args = ["export", "--model", str(base), "--strategy", str(base / "strategy"), "--shape", "L3-a0.75-f0.75", "--format", "gguf",
            "--out", str(out), "--gguf-dtype", "f16"] + (["--parity-tokens", "8"] if HAS_LLAMACPP else [])
    r = run_cli(*args)
    assert r.exit_code == 0, r.output
    assert out.is_file() and "sha256:" in r.output and "GGUF llama f16" in r.output
    if HAS_LLAMACPP:
        assert "argmax agreement 100%" in r.output
    bad = run_cli(*args[:-4 if HAS_LLAMACPP else -2], "--out", tmp_path / "s.bin")
    assert bad.exit_code != 0 and "must end in .gguf" in bad.output


def _tensor_names(path: Path) -> set[str]:
    import gguf

    return {t.name for t in gguf.GGUFReader(str(path)).tensors}
