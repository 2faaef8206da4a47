"""Width importance: streamed statistics, FLAP scores, GQA grouping, allocation, bias compensation."""

from __future__ import annotations

import pytest
import torch

from core.elastic.linear import ElasticLinear
from core.elastic.model import ElasticModel, head_rows
from core.errors import ConfigError
from core.model.loader import ModelInfo
from core.spec import SubnetSpec
from core.strategy.schema import bias_key, naive_strategy
from core.strategy.units import kept_ffn_channels, kept_kv_groups
from core.strategy.width import (
    ChannelStatsRecorder,
    RunningMoments,
    compensation_bias,
    fluctuation,
    global_allocation,
    kv_group_scores,
    parse_bias_modules,
    select_widths,
    standardise,
    top_units,
    unit_param_cost,
    unit_scores,
)
from tests.conftest import make_tiny


def _recorded(em: ElasticModel, ids: torch.Tensor) -> ChannelStatsRecorder:
    with torch.no_grad(), ChannelStatsRecorder(em) as rec:
        for b in ids.split(2):
            em(b)
    return rec


def test_running_moments_match_batch_statistics() -> None:
    x = torch.randn(37, 5, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.1, 5.0, 0.0], dtype=torch.float64) + 3
    m = RunningMoments()
    for chunk in (x[:1], x[1:10], x[10:11], x[11:]):
        m.update(chunk)
    assert m.count == 37
    torch.testing.assert_close(m.mean, x.mean(0))
    torch.testing.assert_close(m.variance, x.var(0, correction=0))


def test_recorder_streams_inputs_of_o_proj_and_down_proj() -> None:
    em = ElasticModel(make_tiny("llama"))
    ids = torch.randint(0, 97, (4, 9), generator=torch.Generator().manual_seed(0))
    seen: list[torch.Tensor] = []
    h = em.elastic_linears(2)["down_proj"].register_forward_pre_hook(lambda mod, args: seen.append(args[0].reshape(-1, 128)))
    rec = _recorded(em, ids)
    h.remove()
    allx = torch.cat(seen).double()
    assert rec.stats.tokens == 36 and rec.stats.ffn[2].count == 36
    torch.testing.assert_close(rec.stats.ffn[2].mean, allx.mean(0))
    torch.testing.assert_close(rec.stats.ffn[2].variance, allx.var(0, correction=0))
    assert rec.stats.attn[0].mean.shape == (64,)
    assert all(not lin._forward_pre_hooks for i in range(4) for lin in em.elastic_linears(i).values())


def test_recorder_refuses_sliced_model() -> None:
    model = make_tiny("llama")
    em = ElasticModel(model, naive_strategy(ModelInfo.from_config(model.config), "x", 2, (1.0, 0.5)))
    em.set_shape(SubnetSpec(4, 0.5, 0.5))
    with pytest.raises(ConfigError, match="dense model"):
        _recorded(em, torch.randint(0, 97, (2, 5)))


def test_standardise() -> None:
    z = standardise(torch.tensor([1.0, 2.0, 3.0, 10.0], dtype=torch.float64))
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-12) and float(z.std(correction=0)) == pytest.approx(1.0)
    assert torch.equal(standardise(torch.full((3,), 4.0)), torch.zeros(3))
    assert torch.equal(standardise(torch.tensor([5.0])), torch.zeros(1))


def test_fluctuation_and_gqa_grouping() -> None:
    info = ModelInfo.from_config(make_tiny("llama", heads=4, kv=2).config)  # head_dim 16, 2 query heads per group
    var, w = torch.rand(64, dtype=torch.float64), torch.randn(8, 64)
    s = fluctuation(var, w)
    assert float(s[5]) == pytest.approx(float(var[5]) * float((w[:, 5].double() ** 2).sum()))
    groups = kv_group_scores(s, info)
    for g in range(2):
        assert float(groups[g]) == pytest.approx(float(s[head_rows([g], info)].mean()))
    assert float(groups[0]) == pytest.approx(float(s[:32].mean()))


def test_uniform_counts_and_top_units() -> None:
    model = make_tiny("llama", layers=3, heads=8, kv=4, inter=128)
    info = ModelInfo.from_config(model.config)
    em = ElasticModel(model)
    rec = _recorded(em, torch.randint(0, 97, (4, 12), generator=torch.Generator().manual_seed(1)))
    sel = select_widths(em, rec.stats, (1.0, 0.75, 0.5), bias_modules=())
    scores = unit_scores(em, rec.stats)
    for w in (0.75, 0.5):
        key = str(w)
        assert sel.counts["attn"][key] == [kept_kv_groups(info, w)] * 3 and sel.counts["ffn"][key] == [kept_ffn_channels(info, w)] * 3
        for i in range(3):
            kept = sel.ffn[key][i]
            assert list(kept) == sorted(kept)
            dropped = sorted(set(range(128)) - set(kept))
            assert float(scores.ffn[i][list(kept)].min()) >= float(scores.ffn[i][dropped].max())
    assert top_units(torch.tensor([0.5, 2.0, 2.0, -1.0]), 2) == (1, 2)
    assert top_units(torch.tensor([3.0, 1.0, 3.0, 3.0]), 2) == (0, 2)  # ties: lower index first
    assert sel.biases == {}


def test_global_allocation_budget_and_floor() -> None:
    scores = [torch.tensor([3.0, 2.5, 2.0, 1.9]), torch.tensor([-2.0, -3.0, -1.5, -2.5]), torch.tensor([1.0, 0.0, 0.5, 0.2])]
    kept = global_allocation(scores, unit_cost=10.0, budget=10.0 * 2 * 3)  # uniform keep 2 of 4 in each layer
    assert sum(len(k) for k in kept) == 6
    assert kept == [(0, 1, 2, 3), (2,), (0,)]
    with pytest.raises(ConfigError, match="below one unit per layer"):
        global_allocation(scores, unit_cost=10.0, budget=20.0)


def test_global_allocation_matches_uniform_parameter_count() -> None:
    model = make_tiny("llama", layers=3, heads=8, kv=4, inter=128)
    info = ModelInfo.from_config(model.config)
    em = ElasticModel(model)
    rec = _recorded(em, torch.randint(0, 97, (4, 12), generator=torch.Generator().manual_seed(2)))
    sel = select_widths(em, rec.stats, (1.0, 0.5), allocation="global", bias_modules=())
    for module, k in (("attn", kept_kv_groups(info, 0.5)), ("ffn", kept_ffn_channels(info, 0.5))):
        counts = sel.counts[module]["0.5"]
        assert min(counts) >= 1
        assert sum(counts) * unit_param_cost(info, module) == 3 * k * unit_param_cost(info, module)
    assert unit_param_cost(info, "attn") == (2 * 2 + 2) * 8 * 64 and unit_param_cost(info, "ffn") == 3 * 64


def test_compensation_is_exact_for_constant_channels_linear() -> None:
    torch.manual_seed(0)
    lin = ElasticLinear(torch.nn.Linear(16, 8, bias=False))
    x = torch.randn(50, 16)
    removed = [1, 4, 5, 11]
    x[:, removed] = torch.tensor([0.7, -1.3, 2.0, 0.25])
    m = RunningMoments()
    m.update(x[:20])
    m.update(x[20:])
    kept = torch.tensor([i for i in range(16) if i not in removed])
    dense = lin(x)
    lin.restrict(in_idx=kept, extra_bias=compensation_bias(lin.base.weight, m.mean, kept))
    torch.testing.assert_close(lin(x[:, kept]), dense, rtol=1e-5, atol=1e-5)
    lin.restrict(in_idx=kept)
    assert not torch.allclose(lin(x[:, kept]), dense, atol=1e-3)


def test_compensation_is_exact_for_constant_kv_group_in_model() -> None:
    """Qwen2 with the v_proj rows of KV group 1 zeroed: its heads output the constant v bias, so removing the
    group with compensation reproduces the dense logits; without compensation it does not."""
    model = make_tiny("qwen2", heads=4, kv=2, seed=4)
    info = ModelInfo.from_config(model.config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.v_proj.weight[16:32] = 0
    em = ElasticModel(model)
    ids = torch.randint(0, 97, (4, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        dense = em(ids)
    rec = _recorded(em, ids)
    sel = select_widths(em, rec.stats, (1.0, 0.5), bias_modules=("attn",))
    assert all(g == (0,) for g in sel.attn["0.5"])  # zero-variance group is the one dropped
    st = naive_strategy(info, "x", 4, (1.0, 0.5))
    st.attn, st.ffn, st.biases = sel.attn, sel.ffn, sel.biases
    assert bias_key("attn", 0.5, 3) in st.biases and not any(k.startswith("ffn") for k in st.biases)
    em.strategy = st
    with torch.no_grad():
        em.set_shape(SubnetSpec(4, 0.5, 1.0))
        torch.testing.assert_close(em(ids), dense, rtol=1e-4, atol=1e-4)
        st.biases = {}
        em.set_shape(SubnetSpec(4, 0.5, 1.0))
        assert not torch.allclose(em(ids), dense, atol=1e-2)


def test_width_one_keeps_everything_without_bias() -> None:
    em = ElasticModel(make_tiny("llama"))
    rec = _recorded(em, torch.randint(0, 97, (2, 8)))
    sel = select_widths(em, rec.stats, (1.0, 0.75))
    assert set(sel.attn) == set(sel.ffn) == {"0.75"}
    assert sel.biases and all(".0.75." in k for k in sel.biases)
    empty = select_widths(em, rec.stats, (1.0,))
    assert empty.attn == {} and empty.ffn == {} and empty.biases == {}


def test_parse_bias_modules() -> None:
    assert parse_bias_modules("attn,ffn") == parse_bias_modules("ffn, attn") == parse_bias_modules("both") == ("attn", "ffn")
    assert parse_bias_modules("none") == () and parse_bias_modules("ffn") == ("ffn",)
    with pytest.raises(ConfigError, match="mlp"):
        parse_bias_modules("attn,mlp")
    with pytest.raises(ConfigError, match="allocation"):
        select_widths(ElasticModel(make_tiny("llama")), None, (1.0,), allocation="greedy")  # type: ignore[arg-type]
