"""``SmolDelta``: E LoRA experts on one linear, mixed in parameter space by the shape gate."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

GateFn = Callable[[], torch.Tensor]


class SmolDelta(nn.Module):
    """Additive update of one ``ElasticLinear``: ``Δy = scale · B_eff A_eff x``.

    ``A`` is ``[E, r, in_features]``, ``B`` is ``[E, out_features, r]`` (zero at init, so the untrained
    adapter is the identity on the base). ``A_eff = Σ_e g_e A_e`` and ``B_eff = Σ_e g_e B_e`` with the
    gate ``g`` ``[E]`` from ``gate_fn`` (shared by all linears, computed once per forward).
    """

    def __init__(self, in_features: int, out_features: int, experts: int, rank: int, scale: float, gate_fn: GateFn,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        bound = in_features**-0.5
        self.A = nn.Parameter(torch.empty(experts, rank, in_features).uniform_(-bound, bound, generator=generator))
        self.B = nn.Parameter(torch.zeros(experts, out_features, rank))
        self.scale = scale
        self._gate_fn = gate_fn

    def mixed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A_eff [r, in], B_eff [out, r])`` for the active shape's gate."""
        g = self._gate_fn().to(device=self.A.device, dtype=self.A.dtype)
        return torch.einsum("e,eri->ri", g, self.A), torch.einsum("e,eor->or", g, self.B)

    def forward(self, x: torch.Tensor, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None) -> torch.Tensor:
        """``x`` ``[..., in_active]`` → ``[..., out_active]``: A's columns sliced by ``in_idx``, B's rows by ``out_idx``."""
        a, b = self.mixed()
        if in_idx is not None:
            a = a.index_select(1, in_idx)
        if out_idx is not None:
            b = b.index_select(0, out_idx)
        return (self.scale * F.linear(F.linear(x.to(a.dtype), a), b)).to(x.dtype)

    def full_delta_weight(self) -> torch.Tensor:
        """``scale · B_eff @ A_eff`` at full size ``[out_features, in_features]`` for the active shape."""
        a, b = self.mixed()
        return self.scale * (b @ a)
