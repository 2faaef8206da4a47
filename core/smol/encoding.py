"""The router's input: a shape as a fixed-size vector (kept-layer mask ⊕ one-hot widths)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from core.errors import ConfigError
from core.spec import SubnetSpec, normalise_width


def encoding_dim(num_layers: int, widths: Sequence[float], attn_widths: Sequence[float] | None = None) -> int:
    """Length of the encoding: ``L`` layer bits + one-hot attention width + one-hot MLP width.

    ``widths`` is the MLP ladder, ``attn_widths`` the attention ladder (``None``: the same as ``widths``).
    """
    return num_layers + len(widths if attn_widths is None else attn_widths) + len(widths)


def _one_hot(w: float, widths: Sequence[float], what: str) -> list[float]:
    hits = [1.0 if abs(normalise_width(w) - normalise_width(x)) < 1e-9 else 0.0 for x in widths]
    if sum(hits) != 1.0:
        raise ConfigError(f"{what} {w} is not in the width ladder {tuple(widths)}")
    return hits


def shape_encoding(
    spec: SubnetSpec, kept_layers: Sequence[int], num_layers: int, widths: Sequence[float], attn_widths: Sequence[float] | None = None
) -> torch.Tensor:
    """``[encoding_dim]`` float32: 1 for each kept original layer, then the attention and MLP one-hots."""
    if len(kept_layers) != spec.num_layers:
        raise ConfigError(f"shape {spec.key}: {len(kept_layers)} kept layers given, expected {spec.num_layers}")
    bits = [0.0] * num_layers
    for i in kept_layers:
        if not 0 <= i < num_layers:
            raise ConfigError(f"kept layer {i} outside [0, {num_layers})")
        bits[i] = 1.0
    vec = bits + _one_hot(spec.attn_width, widths if attn_widths is None else attn_widths, "attn_width") + _one_hot(spec.ffn_width, widths, "ffn_width")
    return torch.tensor(vec, dtype=torch.float32)
