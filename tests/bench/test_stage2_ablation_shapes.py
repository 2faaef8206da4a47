"""bench/stage2_ablation.py's shape list walks the attention and the MLP ladder each on its own (pure, milliseconds)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import stage2_ablation  # noqa: E402

from core.spec import ShapeSpace  # noqa: E402


def test_ablation_shapes_lie_in_a_space_whose_attention_ladder_differs_from_the_mlp_ladder() -> None:
    space = ShapeSpace(30, 15, (1.0, 0.875, 0.75, 0.625), attn_widths=(1.0, 2 / 3, 1 / 3))  # SmolLM2: 3 KV groups
    shapes = stage2_ablation.ablation_shapes(space, between=3)
    for s in shapes:
        space.validate(s)  # ConfigError before: attention widths were taken from the MLP ladder (a0.875, a0.75, ...)
    assert shapes[0].key == "L30-a1-f1" and shapes[-1].key == "L15-a0.333333-f0.625" and len(shapes) == len(set(shapes)) == 5
    assert [s.attn_width for s in shapes] == sorted((s.attn_width for s in shapes), reverse=True)
    assert {s.attn_width for s in shapes} == set(space.attn_ladder) and {s.ffn_width for s in shapes} == set(space.widths)
