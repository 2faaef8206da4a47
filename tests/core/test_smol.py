"""SMoL adapters: parameter-space mixing, top-k gating, eval determinism, slicing, gate computed once."""

from __future__ import annotations

import pytest
import torch

from core.elastic.model import ElasticModel
from core.errors import ConfigError
from core.model.loader import ModelInfo
from core.smol.adapter import SmolDelta
from core.smol.attach import attach_smol
from core.smol.config import SmolConfig
from core.smol.encoding import encoding_dim, shape_encoding
from core.smol.router import ShapeRouter, topk_softmax
from core.spec import SubnetSpec
from core.strategy.schema import naive_strategy
from tests.conftest import make_tiny

WIDTHS = (1.0, 0.75, 0.5)


def _elastic(seed: int = 0) -> ElasticModel:
    model = make_tiny("llama", seed=seed)
    info = ModelInfo.from_config(model.config)
    st = naive_strategy(info, "x", min_layers=2, widths=WIDTHS)
    st.attn["0.5"] = tuple((1,) for _ in range(info.num_layers))  # keep the second KV group: slicing must be exercised
    st.ffn["0.75"] = tuple(tuple(sorted({*range(0, 128, 4), *range(1, 128, 2)})) for _ in range(info.num_layers))  # 96 channels
    return ElasticModel(model, st)


def _randomise(smol_params: list[torch.nn.Parameter], seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in smol_params:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_topk_softmax_keeps_k_and_normalises() -> None:
    logits = torch.tensor([0.1, 2.0, -1.0, 1.5, 0.3])
    g = topk_softmax(logits, 2)
    assert (g > 0).sum() == 2 and g[1] > g[3] > 0
    torch.testing.assert_close(g.sum(), torch.tensor(1.0))
    torch.testing.assert_close(g[[1, 3]], torch.softmax(torch.tensor([2.0, 1.5]), 0))


def test_mixing_equals_single_lora_with_mixed_matrices() -> None:
    gate = torch.tensor([0.0, 0.7, 0.0, 0.3, 0.0])
    d = SmolDelta(16, 12, experts=5, rank=4, scale=2.0, gate_fn=lambda: gate)
    _randomise([d.A, d.B])
    x = torch.randn(3, 7, 16)
    a_eff = 0.7 * d.A[1] + 0.3 * d.A[3]
    b_eff = 0.7 * d.B[1] + 0.3 * d.B[3]
    ref = 2.0 * (x @ a_eff.T) @ b_eff.T
    torch.testing.assert_close(d(x, None, None), ref)
    torch.testing.assert_close(d.full_delta_weight(), 2.0 * b_eff @ a_eff)


def test_untrained_adapters_leave_the_base_unchanged() -> None:
    em = _elastic()
    ids = torch.randint(0, 97, (2, 9))
    with torch.no_grad():
        em.set_shape("L3-a0.5-f0.75")
        before = em(ids)
        attach_smol(em, SmolConfig())
        after = em(ids)
    torch.testing.assert_close(after, before)


def test_sliced_delta_equals_slice_of_full_delta_and_merge_matches_forward() -> None:
    em = _elastic()
    smol = attach_smol(em, SmolConfig(num_experts=3, rank=4, top_k=2))
    _randomise(list(smol.parameters()))
    em.eval()
    em.set_shape("L3-a0.5-f0.75")
    for name in ("q_proj", "o_proj", "up_proj", "down_proj"):
        lin = em.elastic_linears(0)[name]
        assert lin.out_idx is not None or lin.in_idx is not None
        x = torch.randn(2, 5, lin.active_weight().shape[1])
        full = lin.delta.full_delta_weight()  # type: ignore[union-attr]
        assert full.shape == (lin.out_features, lin.in_features)
        w = full
        if lin.out_idx is not None:
            w = w[lin.out_idx]
        if lin.in_idx is not None:
            w = w[:, lin.in_idx]
        with torch.no_grad():
            torch.testing.assert_close(lin.delta(x, lin.in_idx, lin.out_idx), x @ w.T, rtol=1e-5, atol=1e-6)  # type: ignore[misc]
            merged = torch.nn.functional.linear(x, lin.merged_weight(), lin.active_bias())
            torch.testing.assert_close(lin(x), merged, rtol=1e-5, atol=1e-5)


def test_gate_depends_on_shape_and_eval_is_deterministic() -> None:
    em = _elastic()
    smol = attach_smol(em, SmolConfig(num_experts=5, top_k=2, router_noise_std=1.0))
    _randomise(list(smol.router.parameters()))  # type: ignore[union-attr]
    em.eval()
    ids = torch.randint(0, 97, (1, 6))
    em.set_shape("L2-a0.5-f0.5")
    with torch.no_grad():
        a, b = em(ids), em(ids)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    g_small, g_big = smol.gate("L2-a0.5-f0.5", em), smol.gate("L4-a1-f1", em)
    assert (g_small > 0).sum() == 2 and not torch.equal(g_small, g_big)
    torch.testing.assert_close(smol.gate("L2-a0.5-f0.5", em), g_small, rtol=0, atol=0)
    # training mode: noise changes the gate between forwards (with no fixed seed)
    em.train()
    gates = set()
    for _ in range(8):
        smol.source.invalidate()
        gates.add(tuple(smol.source().detach().tolist()))
    assert len(gates) > 1
    smol.source.noise_seed = 7
    smol.source.invalidate()
    g1 = smol.source().detach().clone()
    smol.source.invalidate()
    torch.testing.assert_close(smol.source().detach(), g1, rtol=0, atol=0)


def test_gate_is_computed_once_per_forward() -> None:
    em = _elastic()
    smol = attach_smol(em, SmolConfig())
    calls = []
    smol.router.register_forward_hook(lambda *a: calls.append(1))  # type: ignore[union-attr]
    em.set_shape("L3-a0.75-f0.5")
    ids = torch.randint(0, 97, (2, 8))
    with torch.no_grad():
        em(ids)
    assert len(calls) == 1 and smol.source.computations == 1
    em.train()
    em(ids).sum().backward()  # fresh gate (and graph) per training forward
    assert len(calls) == 2
    em.set_shape("L2-a1-f1")  # a new shape outside forward (e.g. export) gets its own gate
    smol.deltas["layers.0.q_proj"].full_delta_weight()
    assert len(calls) == 3


def test_cached_training_gate_is_not_reused_in_eval() -> None:
    """A noisy gate cached by a training forward must not leak into export/eval of the same shape."""
    em = _elastic()
    smol = attach_smol(em, SmolConfig(router_noise_std=5.0))
    em.set_shape("L3-a0.75-f0.5")
    em.train()
    em(torch.randint(0, 97, (1, 5)))
    noisy = smol.source().detach().clone()
    em.eval()
    clean = smol.source().detach()
    torch.testing.assert_close(clean, smol.gate("L3-a0.75-f0.5", em), rtol=0, atol=0)
    assert not torch.equal(noisy, clean)
    with torch.no_grad():
        smol.router.proj.bias.add_(torch.tensor([9.0, 0, 0, 0, 0]))  # type: ignore[union-attr]
    assert smol.source()[0] > 0  # an in-place weight update invalidates the cached gate


def test_router_gets_gradient_and_single_lora_has_no_router() -> None:
    em = _elastic()
    smol = attach_smol(em, SmolConfig())
    _randomise(list(smol.parameters()))
    em.set_shape("L3-a0.75-f0.5")
    em(torch.randint(0, 97, (1, 6))).pow(2).mean().backward()
    assert smol.router is not None and smol.router.proj.weight.grad is not None and smol.router.proj.weight.grad.abs().sum() > 0
    em2 = _elastic()
    lora = attach_smol(em2, SmolConfig(mixture="lora", num_experts=5))
    assert lora.router is None and lora.deltas["layers.0.q_proj"].A.shape[0] == 1
    assert not any(k.startswith("router") for k in lora.state_dict())


def test_state_roundtrip_and_mismatch_errors() -> None:
    em = _elastic()
    smol = attach_smol(em, SmolConfig(num_experts=3, rank=2))
    _randomise(list(smol.parameters()))
    state = {k: v.clone() for k, v in smol.state_dict().items()}
    em2 = _elastic()
    other = attach_smol(em2, SmolConfig(num_experts=3, rank=2), seed=5)
    other.load_state_dict(state)
    for k, v in other.state_dict().items():
        torch.testing.assert_close(v, state[k])
    with pytest.raises(ConfigError, match="shape"):
        attach_smol(_elastic(), SmolConfig(num_experts=3, rank=4)).load_state_dict(state)
    with pytest.raises(ConfigError, match="missing"):
        other.load_state_dict({k: v for k, v in state.items() if "router" not in k})
    with pytest.raises(ConfigError, match="already has adapters"):
        attach_smol(em2, SmolConfig())
    other.detach(em2)
    assert all(lin.delta is None for lin in em2.elastic_linears(0).values()) and not hasattr(em2, "smol_router")


def test_encoding_and_config_validation() -> None:
    enc = shape_encoding(SubnetSpec(2, 0.5, 1.0), (0, 3), 4, WIDTHS)
    assert enc.tolist() == [1, 0, 0, 1, 0, 0, 1, 1, 0, 0] and len(enc) == encoding_dim(4, WIDTHS)
    with pytest.raises(ConfigError, match="not in the width ladder"):
        shape_encoding(SubnetSpec(2, 0.625, 1.0), (0, 3), 4, WIDTHS)
    with pytest.raises(ConfigError, match="top_k"):
        SmolConfig(num_experts=2, top_k=3)
    with pytest.raises(ConfigError, match="targets"):
        SmolConfig(targets=("qkv",))
    assert SmolConfig.from_dict(SmolConfig(rank=3).to_dict()) == SmolConfig(rank=3)
    r = ShapeRouter(10, 5, 2, noise_std=0.0)
    r.train()
    assert torch.equal(r(enc), r(enc))
