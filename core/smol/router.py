"""The one global router: shape encoding → E logits → top-k → softmax (a gate over the experts)."""

from __future__ import annotations

import torch
from torch import nn


def topk_softmax(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Gate ``[E]``: softmax over the ``k`` largest logits, exactly 0 elsewhere (ties keep lower indices)."""
    vals, idx = torch.topk(logits, k, sorted=True)
    return torch.zeros_like(logits).scatter(0, idx, torch.softmax(vals, dim=0))


class ShapeRouter(nn.Module):
    """Linear map from the shape encoding ``[D]`` to expert logits ``[E]``; noisy only in training mode."""

    def __init__(self, in_dim: int, num_experts: int, top_k: int, noise_std: float, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, num_experts)
        self.top_k = top_k
        self.noise_std = noise_std
        bound = in_dim**-0.5
        with torch.no_grad():
            self.proj.weight.uniform_(-bound, bound, generator=generator)
            self.proj.bias.zero_()

    def forward(self, encoding: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Gate ``[E]`` for one shape encoding ``[D]``; ``generator`` drives the training noise."""
        logits = self.proj(encoding.to(self.proj.weight.dtype))
        if self.training and self.noise_std > 0:
            noise = torch.randn(logits.shape, generator=generator, dtype=logits.dtype)
            logits = logits + self.noise_std * noise.to(logits.device)
        return topk_softmax(logits, self.top_k)
