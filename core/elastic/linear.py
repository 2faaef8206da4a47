"""``ElasticLinear``: wraps an ``nn.Linear`` and computes it on a slice of its rows / columns."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn


class LinearDelta(Protocol):
    """An additive adapter on an elastic linear (e.g. a SMoL LoRA): returns ``[..., out_active]``."""

    def __call__(self, x: torch.Tensor, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None) -> torch.Tensor: ...


class ElasticLinear(nn.Module):
    """A linear whose active output rows (``out_idx``) and input columns (``in_idx``) can be restricted.

    ``y = x @ W[out_idx][:, in_idx].T + b[out_idx] + delta(x) + extra_bias``. With no indices, no delta and no
    extra bias it is exactly the wrapped layer. ``extra_bias`` (``[out_active]``) carries Stage 1's compensation.
    The wrapped layer's parameters are untouched (frozen or not, as the caller decides).
    """

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.out_idx: torch.Tensor | None = None
        self.in_idx: torch.Tensor | None = None
        self.extra_bias: torch.Tensor | None = None
        self.delta: LinearDelta | None = None

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def restrict(self, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None, extra_bias: torch.Tensor | None = None) -> None:
        """Set the active slice (``None`` = all) and the compensation bias for the active shape."""
        self.out_idx, self.in_idx, self.extra_bias = out_idx, in_idx, extra_bias

    def active_weight(self) -> torch.Tensor:
        """``[out_active, in_active]`` slice of the wrapped weight."""
        w: torch.Tensor = self.base.weight
        if self.out_idx is not None:
            w = w.index_select(0, self.out_idx)
        if self.in_idx is not None:
            w = w.index_select(1, self.in_idx)
        return w

    def active_bias(self) -> torch.Tensor | None:
        """Wrapped bias on the active rows plus the compensation bias (``None`` when both are absent)."""
        b: torch.Tensor | None = self.base.bias
        if b is not None and self.out_idx is not None:
            b = b.index_select(0, self.out_idx)
        if self.extra_bias is not None:
            b = self.extra_bias if b is None else b + self.extra_bias
        return b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.active_weight(), self.active_bias())
        if self.delta is not None:
            y = y + self.delta(x, self.in_idx, self.out_idx)
        return y
