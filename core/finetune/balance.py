"""Loss-magnitude balancing: every shape contributes a loss of the largest shape's magnitude."""

from __future__ import annotations

import torch


def balanced(loss: torch.Tensor, reference: float, loss_value: float | None = None, eps: float = 1e-8) -> torch.Tensor:
    """``loss · sg(reference) / sg(loss)``: the value is ``reference``, the gradient ``∇loss · reference / loss``.

    ``reference`` is the stop-gradient loss of the largest shape. ``loss_value`` overrides ``sg(loss)``
    (data-parallel runs pass the mean over ranks so that every rank uses the same factor).
    """
    denom = float(loss.detach()) if loss_value is None else loss_value
    return loss * (reference / max(denom, eps))
