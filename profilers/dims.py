"""What a shape physically keeps per layer: depth, query heads, KV heads and MLP channels (pure Python)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShapeDims:
    """Depth and kept units per layer. ``q_heads`` ``None`` = the KV groups' full complement (``kv_groups × group_size``),
    which is what every table written before query-head units existed means."""

    num_layers: int
    kv_groups: int
    ffn_channels: int
    q_heads: int | None = None

    def query_heads(self, num_heads: int, num_kv_heads: int) -> int:
        """Kept query heads per layer, given the base model's head counts."""
        return self.q_heads if self.q_heads is not None else self.kv_groups * (num_heads // num_kv_heads)

    def resolved(self, num_heads: int, num_kv_heads: int) -> ShapeDims:
        """The same dims with ``q_heads`` filled in."""
        return ShapeDims(self.num_layers, self.kv_groups, self.ffn_channels, self.query_heads(num_heads, num_kv_heads))
