"""Sandwich sampling: the largest shape, the smallest, and K − 2 random ones; a pure function of (seed, step)."""

from __future__ import annotations

import numpy as np

from core.errors import ConfigError
from core.spec import ShapeSpace, SubnetSpec


def random_shape(space: ShapeSpace, rng: np.random.Generator) -> SubnetSpec:
    """Depth uniform in ``[min_layers, max_layers)`` (``max`` when the range is empty), widths uniform on the ladder."""
    hi = space.max_layers if space.min_layers == space.max_layers else space.max_layers - 1
    depth = int(rng.integers(space.min_layers, hi + 1))
    ia, jf = rng.integers(0, len(space.attn_ladder)), rng.integers(0, len(space.widths))
    a, f = float(space.attn_ladder[int(ia)]), float(space.widths[int(jf)])
    return SubnetSpec(depth, a, f)


def sandwich_shapes(space: ShapeSpace, k: int, seed: int, step: int) -> list[SubnetSpec]:
    """``[largest, smallest, random_1 .. random_{k-2}]`` for optimiser step ``step`` (same on every rank)."""
    if k < 2:
        raise ConfigError(f"sandwich sampling needs at least 2 shapes per step, got {k}")
    rng = np.random.default_rng([seed, step, 0x5A4D])
    return [space.largest, space.smallest] + [random_shape(space, rng) for _ in range(k - 2)]
