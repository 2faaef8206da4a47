"""``ElasticLinear``: wraps an ``nn.Linear`` and computes it on a slice of its rows / columns."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ConfigError

ATTN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
TARGETS = ATTN_TARGETS + MLP_TARGETS


class LinearDelta(Protocol):
    """An additive adapter on an elastic linear (e.g. a SMoL LoRA): returns ``[..., out_active]``."""

    def __call__(self, x: torch.Tensor, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None) -> torch.Tensor: ...


@runtime_checkable
class MergeableDelta(Protocol):
    """An adapter that can be merged into the weight (e.g. a SMoL LoRA)."""

    def full_delta_weight(self) -> torch.Tensor:
        """Merged delta ``[out_features, in_features]`` (unsliced, scale included) for the active shape."""
        ...


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

    def merged_weight(self, name: str = "linear") -> torch.Tensor:
        """``[out_active, in_active]`` active slice with the adapter's update merged (fp32 when one is attached).

        ``ConfigError`` (naming ``name``) when the adapter cannot be merged or its delta has the wrong shape.
        """
        w = self.active_weight()
        if self.delta is None:
            return w
        if not isinstance(self.delta, MergeableDelta):
            raise ConfigError(f"{name}: attached adapter {type(self.delta).__name__} cannot be merged (it has no full_delta_weight())")
        dw = self.delta.full_delta_weight()
        full = tuple(self.base.weight.shape)
        if tuple(dw.shape) != full:
            raise ConfigError(f"{name}: adapter delta has shape {tuple(dw.shape)}, expected the full weight shape {full}")
        dw = dw.to(device=w.device, dtype=torch.float32)
        if self.out_idx is not None:
            dw = dw.index_select(0, self.out_idx)
        if self.in_idx is not None:
            dw = dw.index_select(1, self.in_idx)
        return w.float() + dw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.active_weight(), self.active_bias())
        if self.delta is not None:
            y = y + self.delta(x, self.in_idx, self.out_idx)
        return y
