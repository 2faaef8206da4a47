"""Objective pieces: sandwich sampler, aligned distillation, loss balancing, backward per shape."""

from __future__ import annotations

import weakref

import pytest
import torch
import torch.nn.functional as F

from core.elastic.model import ElasticModel
from core.errors import ConfigError
from core.finetune.balance import balanced
from core.finetune.losses import next_token_ce, soft_ce
from core.finetune.sampler import sandwich_shapes
from core.finetune.step import sandwich_step
from core.model.loader import ModelInfo
from core.smol.attach import SmolAdapters, attach_smol
from core.smol.config import SmolConfig
from core.spec import ShapeSpace, SubnetSpec
from core.strategy.schema import naive_strategy
from tests.conftest import make_tiny


def test_sandwich_is_largest_smallest_then_random_and_seeded() -> None:
    space = ShapeSpace(12, 6, (1.0, 0.875, 0.75, 0.625))
    s = sandwich_shapes(space, 4, seed=3, step=10)
    assert s[0] == space.largest and s[1] == space.smallest and len(s) == 4
    assert s == sandwich_shapes(space, 4, seed=3, step=10)
    many = [x for step in range(300) for x in sandwich_shapes(space, 4, seed=3, step=step)[2:]]
    depths = {x.num_layers for x in many}
    assert depths == set(range(6, 12))  # uniform over [min, L): never L itself
    assert {x.attn_width for x in many} == set(space.widths) and {x.ffn_width for x in many} == set(space.widths)
    assert sandwich_shapes(space, 4, seed=3, step=11) != s or sandwich_shapes(space, 4, seed=4, step=10) != s
    with pytest.raises(ConfigError, match="at least 2"):
        sandwich_shapes(space, 1, 0, 0)


def test_soft_ce_is_aligned_with_the_ce_positions() -> None:
    """A one-hot teacher on the next tokens must give exactly the CE; the reference's shifted teacher does not."""
    torch.manual_seed(0)
    ids = torch.randint(0, 11, (2, 9))
    student = torch.randn(2, 9, 11)
    teacher = torch.full((2, 9, 11), -1e4)
    teacher[:, :-1].scatter_(2, ids[:, 1:, None], 0.0)  # logits at t put all mass on token t + 1
    torch.testing.assert_close(soft_ce(student, teacher), next_token_ce(student, ids))
    # the reference code's alignment: student at t against the teacher at t + 1
    v = student.shape[-1]
    shifted = -(F.softmax(teacher[:, 1:].reshape(-1, v), -1) * F.log_softmax(student[:, :-1].reshape(-1, v), -1)).sum(-1).mean()
    assert not torch.allclose(shifted, next_token_ce(student, ids))
    # the last position predicts nothing and must not matter
    t2 = teacher.clone()
    t2[:, -1] = torch.randn(2, 11)
    torch.testing.assert_close(soft_ce(student, t2), soft_ce(student, teacher))
    # soft CE of a distribution against itself is its entropy (>= 0), minimised by the teacher
    assert soft_ce(student, student) < soft_ce(student, torch.randn(2, 9, 11))


def test_balanced_losses_have_equal_magnitude_and_scaled_gradients() -> None:
    w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    x = torch.tensor([1.0, 2.0, 3.0])
    ref = torch.tensor(4.0)
    li = (w * x).pow(2).sum()  # value 40.25
    b = balanced(li, float(ref))
    assert float(b.detach()) == pytest.approx(float(ref))
    (gb,) = torch.autograd.grad(b, w, retain_graph=True)
    (gi,) = torch.autograd.grad(li, w)
    torch.testing.assert_close(gb, gi * float(ref) / float(li.detach()))
    assert float(balanced(li, float(ref), loss_value=8.0).detach()) == pytest.approx(40.25 * 4.0 / 8.0)


def _setup(seed: int = 0) -> tuple[ElasticModel, SmolAdapters, ShapeSpace]:
    model = make_tiny("llama", seed=seed)
    st = naive_strategy(ModelInfo.from_config(model.config), "x", min_layers=2, widths=(1.0, 0.5))
    em = ElasticModel(model, st)
    smol = attach_smol(em, SmolConfig(num_experts=3, rank=2))
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in smol.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    for p in em.parameters():
        p.requires_grad_(False)
    for p in smol.parameters():
        p.requires_grad_(True)
    em.eval()  # deterministic gate for comparisons
    return em, smol, st.space


def test_step_gradient_is_sum_of_per_shape_gradients() -> None:
    em, smol, space = _setup()
    ids = torch.randint(0, 97, (2, 10))
    shapes = [space.largest, space.smallest, SubnetSpec(3, 1.0, 0.5)]
    losses = sandwich_step(em, em.set_shape, ids, shapes)
    got = [p.grad.clone() for p in smol.parameters()]  # type: ignore[union-attr]
    assert [x.key for x in losses] == [s.key for s in shapes]
    # reference: build the total objective explicitly in one graph
    for p in smol.parameters():
        p.grad = None
    em.set_shape(shapes[0])
    big = em(ids)
    l0 = next_token_ce(big, ids)
    total = l0
    for s in shapes[1:]:
        em.set_shape(s)
        li = soft_ce(em(ids), big.detach())
        total = total + li * (l0.detach() / li.detach())
    total.backward()
    for g, p in zip(got, smol.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-7)
    assert losses[0].loss == pytest.approx(float(l0.detach()))


def test_distill_off_uses_plain_ce_for_every_shape() -> None:
    em, smol, space = _setup()
    ids = torch.randint(0, 97, (2, 10))
    losses = sandwich_step(em, em.set_shape, ids, [space.largest, space.smallest], distill=False, balance=False)
    with torch.no_grad():
        em.set_shape(space.smallest)
        ce_small = float(next_token_ce(em(ids), ids))
    assert losses[1].loss == pytest.approx(ce_small, rel=1e-5)


def test_only_one_graph_is_alive() -> None:
    """Saved activations of a shape are freed by its backward before the next shape's forward starts."""
    em, smol, space = _setup()
    ids = torch.randint(0, 97, (2, 10))
    live: weakref.WeakSet[object] = weakref.WeakSet()
    peak = [0]

    class Box:
        def __init__(self, t: torch.Tensor) -> None:
            self.t = t

    def pack(t: torch.Tensor) -> Box:
        b = Box(t)
        live.add(b)
        peak[0] = max(peak[0], len(live))
        return b

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda b: b.t):
        em.set_shape(space.largest)
        next_token_ce(em(ids), ids).backward()
        one = peak[0]
        peak[0] = 0
        sandwich_step(em, em.set_shape, ids, [space.largest, space.smallest, SubnetSpec(3, 0.5, 1.0), SubnetSpec(2, 1.0, 1.0)])
    assert len(live) == 0
    assert one > 0 and peak[0] <= one
