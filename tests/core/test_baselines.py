"""Baselines as strategies (core.baselines): registry, each method's selection rule, parameter counts, targets,
and the per-shape LoRA recipe, on tiny random models."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from core.baselines import BASELINES, BaselineConfig, baseline_names, build_baseline_strategy
from core.baselines.angular import best_blocks
from core.baselines.block_ppl import single_block_nll
from core.baselines.block_taylor import taylor_block_salience
from core.baselines.build import one_shot_removal
from core.baselines.params import full_params, layer_params, remaining_fraction, shape_params
from core.baselines.shape_lora import ShapeLoraConfig, finetune_shape
from core.baselines.targets import ShapeOption, best_within, closest_shape, shape_options
from core.elastic.model import ElasticModel
from core.errors import ConfigError
from core.model.loader import ModelInfo
from core.spec import SubnetSpec
from core.strategy.calibrate import CalibrationConfig, calibrate
from core.strategy.schema import Strategy
from tests.conftest import make_tiny

SHA = "0" * 64
VOCAB = 97


def _tokens(n: int = 16 * 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed))


def _cfg(**kw: object) -> BaselineConfig:
    base: dict[str, object] = {"min_layers": 3, "widths": (1.0, 0.75, 0.5), "window": 16, "num_windows": 8, "batch_size": 4}
    return BaselineConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture
def tiny() -> tuple[torch.nn.Module, ModelInfo]:
    m = make_tiny("llama", layers=6, vocab=VOCAB)
    return m, ModelInfo.from_config(m.config)


def _nll_without(em: ElasticModel, windows: torch.Tensor, removed: set[int]) -> float:
    """Reference: mean next-token NLL with ``removed`` layers skipped, computed directly."""
    with torch.no_grad():
        h = em.embed(windows)
        h = em.run_layers(h, [i for i in range(em.info.num_layers) if i not in removed], em.context(h))
        logits = em.logits(h)[:, :-1]
        return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1)))


# ---- registry --------------------------------------------------------------------------------------------


def test_registry_lists_methods_without_importing_them() -> None:
    assert set(baseline_names("depth")) == {"dp", "drop-last", "ppl-block", "taylor-block", "angular"}
    assert set(baseline_names("width")) == {"flap", "magnitude", "llm-pruner"}
    assert all(":" in b.target for b in BASELINES.values())


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_method_builds_a_valid_strategy_that_plugs_into_the_elastic_model(name: str, tiny, tmp_path: Path) -> None:
    model, info = tiny
    st = build_baseline_strategy(name, model, info, SHA, _tokens(), _cfg())
    assert st.meta["method"] == name and st.meta["kind"] == BASELINES[name].kind
    if BASELINES[name].kind == "depth":
        assert (st.space.min_layers, st.space.max_layers, st.space.widths) == (3, 6, (1.0,))
    else:
        assert (st.space.min_layers, st.space.widths) == (6, (1.0, 0.75, 0.5))
    loaded = Strategy.load(st.save(tmp_path / name))
    assert loaded.depth == st.depth and loaded.attn == st.attn and loaded.meta["method"] == name
    em = ElasticModel(model, loaded)
    ids = _tokens(12).reshape(1, -1)
    for spec in loaded.space:
        em.set_shape(spec)
        assert em(ids).shape == (1, 12, VOCAB)


def test_bad_input_is_refused_with_a_clear_message(tiny) -> None:
    model, info = tiny
    with pytest.raises(ConfigError, match="unknown baseline 'nope'; known: dp"):
        build_baseline_strategy("nope", model, info, SHA, _tokens(), _cfg())
    with pytest.raises(ConfigError, match="only 4 of 6 are removable"):
        build_baseline_strategy("taylor-block", model, info, SHA, _tokens(), _cfg(min_layers=1))
    with pytest.raises(ConfigError, match="width method: give a width ladder"):
        build_baseline_strategy("flap", model, info, SHA, _tokens(), _cfg(widths=(1.0,)))
    with pytest.raises(ConfigError, match="outside the model's vocabulary"):
        build_baseline_strategy("angular", model, info, SHA, _tokens() + VOCAB, _cfg())
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        build_baseline_strategy("angular", model, info, SHA, _tokens(4096), _cfg(window=1024))
    with pytest.raises(ConfigError, match="angular_token"):
        _cfg(angular_token="first")


def test_the_elastic_model_is_left_as_found(tiny) -> None:
    model, info = tiny
    from core.strategy.schema import naive_strategy

    em = ElasticModel(model, naive_strategy(info, SHA, 2, (1.0, 0.5)))
    em.set_shape("L3-a0.5-f0.5")
    em.train()
    build_baseline_strategy("taylor-block", em, info, SHA, _tokens(), _cfg())
    assert em.spec.key == "L3-a0.5-f0.5" and em.training
    assert all(not p.requires_grad or p.grad is None for p in em.parameters())


# ---- selection rules -------------------------------------------------------------------------------------


def test_one_shot_removal_removes_the_least_important_removable_blocks() -> None:
    kept = one_shot_removal([5.0, 1.0, 3.0, 0.5, 2.0, 0.1], range(0, 5), 6, 3)
    assert kept[6] == (0, 1, 2, 3, 4, 5)
    assert kept[5] == (0, 1, 2, 4, 5)  # block 5 (0.1) is protected; 3 (0.5) goes first
    assert kept[4] == (0, 2, 4, 5)
    assert kept[3] == (0, 2, 5)


def test_ppl_block_scores_are_the_single_removal_nll(tiny) -> None:
    model, info = tiny
    em = ElasticModel(model).eval()
    windows = _tokens().reshape(8, 16)
    dense, nll = single_block_nll(em, windows, batch_size=4)
    assert dense == pytest.approx(_nll_without(em, windows, set()), rel=1e-5)
    for i in (0, 3, 5):
        assert nll[i] == pytest.approx(_nll_without(em, windows, {i}), rel=1e-5)
    st = build_baseline_strategy("ppl-block", model, info, SHA, windows.reshape(-1), _cfg())
    worst = sorted(range(6), key=lambda i: (nll[i], i))
    assert set(range(6)) - set(st.depth[4]) == set(worst[:2])
    assert st.meta["block_removed_ppl"][worst[0]] == pytest.approx(math.exp(nll[worst[0]]))


def _kill_block(model: Any, layer: int) -> None:
    """Make decoder layer ``layer`` the identity (zero o_proj and down_proj)."""
    with torch.no_grad():
        model.model.layers[layer].self_attn.o_proj.weight.zero_()
        model.model.layers[layer].mlp.down_proj.weight.zero_()


def test_taylor_salience_is_zero_for_an_identity_block_and_it_goes_first(tiny) -> None:
    model, info = tiny
    _kill_block(model, 3)
    em = ElasticModel(model).eval()
    sal = taylor_block_salience(em, _tokens().reshape(8, 16), batch_size=4)
    assert sal[3] == 0.0 and all(s > 0 for i, s in enumerate(sal) if i != 3)
    st = build_baseline_strategy("taylor-block", model, info, SHA, _tokens(), _cfg())
    assert 3 not in st.depth[5]
    assert (st.meta["protect_first"], st.meta["protect_last"]) == (1, 1)  # ⌈6/8⌉, ⌈6/16⌉
    assert all(0 in k and 5 in k for k in st.depth.values())


def test_taylor_salience_matches_a_direct_gradient(tiny) -> None:
    model, _ = tiny
    em = ElasticModel(model).eval()
    windows = _tokens().reshape(8, 16)
    sal = taylor_block_salience(em, windows, batch_size=8)  # one batch: Σ|W ⊙ ∂L/∂W| over the block
    w = model.model.layers[2].mlp.up_proj.base.weight
    loss = F.cross_entropy(em(windows)[:, :-1].reshape(-1, VOCAB), windows[:, 1:].reshape(-1))
    params = [p for n, p in model.model.layers[2].named_parameters() if n.endswith("weight")]
    for p in params:
        p.requires_grad_(True)
    grads = torch.autograd.grad(loss, params)
    expect = sum(float((p.detach() * g).abs().sum()) for p, g in zip(params, grads, strict=True))
    assert sal[2] == pytest.approx(expect, rel=1e-4)
    assert w.grad is None


def test_angular_removes_the_block_whose_ends_match(tiny) -> None:
    states = [torch.nn.functional.normalize(torch.randn(5, 8, generator=torch.Generator().manual_seed(k), dtype=torch.float64), dim=-1) for k in range(7)]
    states[4] = states[2].clone()  # layers 2 and 3 together are the identity
    kept, dist = best_blocks(states, 0, 0, 3)
    assert kept[4] == (0, 1, 4, 5)
    assert dist[2][2] == pytest.approx(0.0, abs=1e-6)
    kept_protected, _ = best_blocks(states, 3, 0, 4)  # blocks may not start before layer 3
    assert min(set(range(6)) - set(kept_protected[4])) >= 3


def test_angular_on_a_model_with_an_identity_block(tiny) -> None:
    model, info = tiny
    _kill_block(model, 2)
    for token in ("last", "all"):
        st = build_baseline_strategy("angular", model, info, SHA, _tokens(), _cfg(angular_token=token))
        assert st.depth[5] == (0, 1, 3, 4, 5)
        assert st.meta["angular_distance"]["1"][2] == pytest.approx(0.0, abs=1e-6)


def test_dp_equals_stage1_depth_and_drop_last_keeps_the_first_layers(tiny) -> None:
    model, info = tiny
    st = build_baseline_strategy("dp", model, info, SHA, _tokens(), _cfg())
    ref = calibrate(model, info, SHA, _tokens(), CalibrationConfig(min_layers=3, widths=(1.0,), window=16, num_windows=8, batch_size=4))
    assert st.depth == ref.depth and st.keep_last == 1
    drop = build_baseline_strategy("drop-last", model, info, SHA, _tokens(), _cfg())
    assert drop.depth[4] == (0, 1, 2, 3)


def test_dp_reads_every_given_window(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DP reference scores the same windows as every baseline, however many tokens they hold (Stage 1's own
    ``max_tokens`` default does not cut them)."""
    import core.baselines.reference as reference

    seen: list[CalibrationConfig] = []

    def spy(*args: Any) -> Strategy:
        seen.append(args[4])
        raise RuntimeError("stop")

    monkeypatch.setattr(reference, "calibrate", spy)
    model, info = tiny
    with pytest.raises(RuntimeError, match="stop"):
        build_baseline_strategy("dp", model, info, SHA, _tokens(), _cfg())
    assert seen[0].max_tokens is None


def test_flap_baseline_is_stage1_width_selection_with_biases(tiny) -> None:
    model, info = tiny
    st = build_baseline_strategy("flap", model, info, SHA, _tokens(), _cfg())
    ref = calibrate(model, info, SHA, _tokens(), CalibrationConfig(min_layers=3, widths=(1.0, 0.75, 0.5), window=16, num_windows=8, batch_size=4,
                                                            bias_modules=("attn", "ffn")))  # FLAP compensates both modules
    assert st.attn == ref.attn and st.ffn == ref.ffn
    assert set(st.biases) == set(ref.biases) and all(torch.equal(st.biases[k], ref.biases[k]) for k in st.biases)
    assert st.depth == {6: tuple(range(6))}


def test_magnitude_keeps_the_largest_units(tiny) -> None:
    model, info = tiny
    with torch.no_grad():
        mlp = model.model.layers[1].mlp
        mlp.gate_proj.weight[7] *= 10
        mlp.down_proj.weight[:, 9].zero_()
        mlp.up_proj.weight[9].zero_()
        mlp.gate_proj.weight[9].zero_()
        model.model.layers[1].self_attn.v_proj.weight[16:32] *= 10  # KV group 1 (head_dim 16)
    st = build_baseline_strategy("magnitude", model, info, SHA, _tokens(), _cfg())
    assert 7 in st.ffn["0.5"][1] and 9 not in st.ffn["0.75"][1]
    assert st.attn["0.5"][1] == (1,)
    assert not st.biases and st.meta["data_free"] is True


def test_llm_pruner_unit_importance_is_the_summed_taylor_term(tiny) -> None:
    from core.baselines.llm_pruner import unit_taylor
    from core.elastic.model import head_rows, kv_rows

    model, info = tiny
    with torch.no_grad():  # MLP channel 5 of layer 1 contributes nothing: zero importance
        mlp = model.model.layers[1].mlp
        mlp.gate_proj.weight[5].zero_()
        mlp.up_proj.weight[5].zero_()
        mlp.down_proj.weight[:, 5].zero_()
    em = ElasticModel(model).eval()
    windows = _tokens().reshape(8, 16)
    scores = unit_taylor(em, windows, batch_size=8)
    assert scores[1][1][5] == 0.0 and (scores[1][1] > 0).sum() == 127
    attn = model.model.layers[3].self_attn
    mats = [attn.q_proj.base.weight, attn.k_proj.base.weight, attn.v_proj.base.weight, attn.o_proj.base.weight]
    for p in mats:
        p.requires_grad_(True)
    loss = F.cross_entropy(em(windows)[:, :-1].reshape(-1, VOCAB), windows[:, 1:].reshape(-1))
    g = dict(zip(("q", "k", "v", "o"), torch.autograd.grad(loss, mats), strict=True))
    w = dict(zip(("q", "k", "v", "o"), (m.detach() for m in mats), strict=True))
    q, kv = head_rows([1], info), kv_rows([1], info)
    expect = sum(float((w[n][r] * g[n][r]).abs().sum()) for n, r in (("q", q), ("k", kv), ("v", kv))) + float((w["o"][:, q] * g["o"][:, q]).abs().sum())
    assert float(scores[3][0][1]) == pytest.approx(expect, rel=1e-4)
    st = build_baseline_strategy("llm-pruner", model, info, SHA, _tokens(), _cfg())
    assert 5 not in st.ffn["0.75"][1] and not st.biases


# ---- parameters and targets ------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [False, True])
def test_parameter_counts_match_exported_subnets(tied: bool, tmp_path: Path) -> None:
    from core.export.writer import export_subnet

    model = make_tiny("llama", layers=4, vocab=VOCAB, tied=tied)
    info = ModelInfo.from_config(model.config)
    flap = build_baseline_strategy("flap", model, info, SHA, _tokens(), _cfg(min_layers=2))
    depth = build_baseline_strategy("angular", model, info, SHA, _tokens(), _cfg(min_layers=2))
    assert full_params(info).total == sum(p.numel() for p in model.parameters())
    for st, key in ((flap, "L4-a0.5-f0.75"), (flap, "L4-a1-f0.5"), (depth, "L2-a1-f1")):
        res = export_subnet(ElasticModel(model, st), key, tmp_path / f"{st.meta['method']}-{key}")
        tensors = load_file(str(res.path / "model.safetensors"))
        # the exported config's bias flags add all-zero q/k/v/gate/up biases: not parameters of the shape
        forced = sum(t.numel() for n, t in tensors.items() if n.endswith(".bias") and not t.any())
        assert forced == {"L4-a0.5-f0.75": 4 * (32 + 16 + 16 + 2 * 96), "L4-a1-f0.5": 4 * 2 * 64, "L2-a1-f1": 0}[key]
        assert shape_params(info, SubnetSpec.parse(key), st).total == res.num_parameters - forced, key
    assert remaining_fraction(info, SubnetSpec(2), depth)[0] == pytest.approx(0.5)


def test_layer_params_counts_units_and_biases(tiny) -> None:
    _, info = tiny  # hidden 64, 4 heads / 2 KV groups of head_dim 16, MLP 128
    full = layer_params(info, 2, 128)
    assert full == 64 * (64 + 2 * 32) + 64 * 64 + 3 * 64 * 128 + 2 * 64
    assert layer_params(info, 1, 64, attn_bias=True, mlp_bias=True) == 64 * (32 + 2 * 16) + 32 * 64 + 3 * 64 * 64 + 2 * 64 + 64 + 64


def _opts(*pairs: tuple[str, float]) -> list[ShapeOption]:
    return [ShapeOption(SubnetSpec.parse(k), f, f) for k, f in pairs]


def test_closest_shape_and_tie_break() -> None:
    opts = _opts(("L10-a1-f1", 0.83), ("L8-a1-f1", 0.67), ("L6-a1-f1", 0.5), ("L7-a1-f1", 0.58))
    assert closest_shape(opts, 0.8).spec.key == "L10-a1-f1"
    assert closest_shape(opts, 0.65).spec.key == "L8-a1-f1"
    assert closest_shape(_opts(("L2-a1-f1", 0.6), ("L1-a1-f1", 0.4)), 0.5).spec.key == "L2-a1-f1"  # tie → larger
    with pytest.raises(ConfigError, match="target fraction"):
        closest_shape(opts, 1.5)


def test_best_within_tolerance_uses_the_score_and_falls_back_to_the_nearest() -> None:
    opts = _opts(("L8-a1-f0.75", 0.66), ("L9-a0.75-f0.75", 0.64), ("L10-a0.625-f0.625", 0.63), ("L12-a0.5-f0.5", 0.5))
    score = {"L8-a1-f0.75": 30.0, "L9-a0.75-f0.75": 20.0, "L10-a0.625-f0.625": 10.0, "L12-a0.5-f0.5": 1.0}
    ch = best_within(opts, 0.65, 0.02, lambda s: score[s.key])
    assert ch.spec.key == "L10-a0.625-f0.625" and set(ch.candidates) == {"L8-a1-f0.75", "L9-a0.75-f0.75", "L10-a0.625-f0.625"}
    assert "within ±0.02" in ch.rule and ch.scores["L8-a1-f0.75"] == 30.0
    far = best_within(opts, 0.9, 0.02, lambda s: score[s.key])
    assert far.spec.key == "L8-a1-f0.75" and far.rule.startswith("none within")


def test_shape_options_of_a_width_strategy_are_diagonal(tiny) -> None:
    model, info = tiny
    st = build_baseline_strategy("magnitude", model, info, SHA, _tokens(), _cfg())
    keys = [o.spec.key for o in shape_options(info, st, diagonal=True)]
    assert keys == ["L6-a1-f1", "L6-a0.75-f0.75", "L6-a0.5-f0.5"]
    assert len(shape_options(info, st, diagonal=False)) == 9


# ---- per-shape LoRA --------------------------------------------------------------------------------------


def test_finetune_shape_trains_only_its_lora_and_lowers_the_loss(tiny) -> None:
    model, info = tiny
    st = build_baseline_strategy("flap", model, info, SHA, _tokens(), _cfg())
    em = ElasticModel(model, st)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    spec = SubnetSpec(6, 0.5, 0.5)
    stream = np.tile(np.arange(20, dtype=np.int64), 40)  # a repeating pattern a LoRA can learn
    cfg = ShapeLoraConfig(steps=30, batch_size=4, seq_len=16, lr=1e-2, warmup_steps=2, rank=4, seed=0)
    with torch.no_grad():
        em.set_shape(spec)
        base_logits = em(torch.as_tensor(stream[:16]).reshape(1, -1))
    adapters, res = finetune_shape(em, spec, stream, cfg)
    assert res.shape == spec.key and res.tokens_seen == 30 * 4 * 16
    assert res.loss_end < res.loss_start - 0.3
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if k in before)
    assert not em.training and em.spec == spec
    adapters.detach(em)
    with torch.no_grad():
        assert torch.allclose(em(torch.as_tensor(stream[:16]).reshape(1, -1)), base_logits, atol=1e-6)


def test_finetune_shape_detaches_on_error(tiny) -> None:
    model, info = tiny
    em = ElasticModel(model)
    with pytest.raises(ValueError, match="shorter than seq_len"):
        finetune_shape(em, SubnetSpec(6), np.arange(8, dtype=np.int64), ShapeLoraConfig(steps=1, seq_len=16))
    assert all(lin.delta is None for lin in em.elastic_linears(0).values())
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        ShapeLoraConfig(steps=0)
