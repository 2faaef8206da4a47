"""``SliceIndex``: the index data the elastic model reads to activate a shape.

The elastic model depends on this protocol, not on ``core.strategy``: a Stage 1 ``Strategy`` satisfies it
structurally, so ``core.strategy`` (which drives the elastic model in calibration) imports ``core.elastic`` and
never the other way round.
"""

from __future__ import annotations

from typing import Protocol

import torch

from core.model.loader import ModelInfo
from core.spec import ShapeSpace


class SliceIndex(Protocol):
    """Kept layers per depth, kept heads / channels per (width, layer) and compensation biases."""

    space: ShapeSpace

    def check_model(self, info: ModelInfo, sha256: str | None = None) -> None:
        """Raise if the index was made for another model."""
        ...

    def kept_layers(self, num_layers: int) -> tuple[int, ...]:
        """Original indices of the layers kept at depth ``num_layers``."""
        ...

    def attn_heads(self, width: float, layer: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(kept query heads, kept KV heads) of ``layer`` at attention ``width``."""
        ...

    def ffn_channels(self, width: float, layer: int) -> tuple[int, ...]:
        """Kept MLP channels of ``layer`` at MLP ``width``."""
        ...

    def bias(self, module: str, width: float, layer: int) -> torch.Tensor | None:
        """Compensation bias ``[hidden]`` of ``module`` (``attn`` / ``ffn``) at ``width`` in ``layer``, or ``None``."""
        ...
