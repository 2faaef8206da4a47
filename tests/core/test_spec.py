"""SubnetSpec keys, parsing, validation; ShapeSpace enumeration; unit counts."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.model.loader import ModelInfo
from core.spec import ShapeSpace, SubnetSpec, parse_widths
from core.strategy.units import kept_ffn_channels, kept_kv_groups


def test_canonical_key_roundtrip() -> None:
    s = SubnetSpec(8, 0.75, 0.625)
    assert s.key == "L8-a0.75-f0.625"
    assert SubnetSpec.parse("L8-a0.750-f0.625") == s
    assert SubnetSpec.parse("L12-a1.0-f1").key == "L12-a1-f1"


@pytest.mark.parametrize("bad", ["L8-a0.75", "8-a1-f1", "L0-a1-f1", "L4-a1.5-f1", "L4-a0-f1", ""])
def test_bad_keys(bad: str) -> None:
    with pytest.raises(ConfigError):
        SubnetSpec.parse(bad)


def test_space_validation_names_the_problem() -> None:
    sp = ShapeSpace(12, 6)
    assert len(sp) == 7 * 16 == len(list(sp))
    assert sp.largest.key == "L12-a1-f1" and sp.smallest.key == "L6-a0.625-f0.625"
    with pytest.raises(ConfigError, match="num_layers 5 outside"):
        sp.validate("L5-a1-f1")
    with pytest.raises(ConfigError, match="attn_width 0.5 not in the width ladder"):
        sp.validate("L8-a0.5-f1")
    assert parse_widths("7/8, 1, 3/4") == (1.0, 0.875, 0.75)
    with pytest.raises(ConfigError, match="must include 1"):
        parse_widths("0.5,0.75")


def test_unit_counts() -> None:
    info = ModelInfo("llama", 12, 256, 16, 8, 16, 768, 8192, True, False, 512)
    assert [kept_kv_groups(info, w) for w in (1, 0.875, 0.75, 0.625)] == [8, 7, 6, 5]
    assert [kept_ffn_channels(info, w) for w in (1, 0.875, 0.75, 0.625)] == [768, 672, 576, 480]
    big = ModelInfo("llama", 32, 4096, 32, 32, 128, 11008, 32000, False, False, 4096)
    assert all(kept_ffn_channels(big, w) % 64 == 0 for w in (0.875, 0.75, 0.625))
