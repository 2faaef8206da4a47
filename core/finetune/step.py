"""One optimiser micro-batch set: sandwich shapes, in-place distillation, balancing, backward per shape."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from core.finetune.balance import balanced
from core.finetune.losses import next_token_ce, soft_ce
from core.spec import SubnetSpec


@dataclass(frozen=True)
class ShapeLoss:
    """The unweighted loss of one shape in one step (mean over data-parallel ranks)."""

    key: str
    loss: float


def _identity(x: float) -> float:
    return x


def _no_sync_context(last: bool) -> AbstractContextManager[object]:
    return nullcontext()


def sandwich_step(
    forward: Callable[[torch.Tensor], torch.Tensor],
    set_shape: Callable[[SubnetSpec], object],
    ids: torch.Tensor,
    shapes: Sequence[SubnetSpec],
    *,
    distill: bool = True,
    balance: bool = True,
    temperature: float = 1.0,
    mean: Callable[[float], float] = _identity,
    sync: Callable[[bool], AbstractContextManager[object]] = _no_sync_context,
    before_forward: Callable[[int], None] | None = None,
) -> list[ShapeLoss]:
    """Accumulate the gradients of all ``shapes`` (``shapes[0]`` is the largest, the teacher) on ``ids`` ``[B, T]``.

    Shape 0 gets next-token CE; the others soft CE against shape 0's detached logits (or CE when
    ``distill`` is off), scaled to shape 0's loss magnitude when ``balance`` is on. Each shape is
    backpropagated before the next forward, so at most one graph is alive. ``mean`` averages a scalar over
    data-parallel ranks; ``sync(last)`` is the DDP ``no_sync`` context for all but the last backward.
    The caller zeroes gradients before and steps the optimiser after.
    """
    out: list[ShapeLoss] = []
    teacher: torch.Tensor | None = None
    reference = 0.0
    for k, spec in enumerate(shapes):
        set_shape(spec)
        if before_forward is not None:
            before_forward(k)
        with sync(k == len(shapes) - 1):
            logits = forward(ids)
            if k == 0 or not distill:
                raw = next_token_ce(logits, ids)
            else:
                assert teacher is not None
                raw = soft_ce(logits, teacher, temperature)
            value = mean(float(raw.detach()))
            if k == 0:
                reference = value
                if distill:
                    teacher = logits.detach()
                loss = raw
            else:
                loss = balanced(raw, reference, value) if balance else raw
            loss.backward()
        del logits, raw, loss
        out.append(ShapeLoss(spec.key, value))
    return out
