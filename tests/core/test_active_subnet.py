"""``ElasticModel.get_active_subnet``: the active slice and merged weights read back from the layers, checked finite;
export activates a shape by touching only the layers whose slice changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.elastic.linear import ElasticLinear
from core.elastic.model import ElasticModel
from core.errors import NonFiniteWeightError
from core.export.writer import export_subnet
from core.model.loader import ModelInfo
from core.strategy.schema import naive_strategy
from tests.conftest import make_tiny


def _elastic() -> ElasticModel:
    model = make_tiny("llama", heads=4, kv=2)
    return ElasticModel(model, naive_strategy(ModelInfo.from_config(model.config), "sha", min_layers=2, widths=(1.0, 0.5)))


def test_active_subnet_is_the_running_slice() -> None:
    em = _elastic()
    em.set_shape("L2-a0.5-f0.5")
    config, state = em.get_active_subnet()
    assert config.kept_layers == em.active_layers and config.kv_group_counts == (1, 1) and config.ffn_channel_counts == (64, 64)
    assert state["model.layers.1.self_attn.q_proj.weight"].shape == (2 * 16, 64)
    assert state["model.layers.1.mlp.down_proj.weight"].shape == (64, 64) and "model.layers.2.mlp.down_proj.weight" not in state
    torch.testing.assert_close(state["model.layers.0.mlp.up_proj.weight"], em.elastic_linears(em.active_layers[0])["up_proj"].active_weight())


def test_export_touches_only_the_layers_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    em = _elastic()
    calls = []
    original = ElasticLinear.restrict
    monkeypatch.setattr(ElasticLinear, "restrict", lambda self, *a, **k: (calls.append(1), original(self, *a, **k))[1])
    export_subnet(em, "L2-a0.5-f0.5", tmp_path / "a")
    assert len(calls) == 2 * 7 * 2  # two kept layers sliced, then the same two restored (56 when every layer was reset twice)
    assert em.spec.key == "L4-a1-f1"
    calls.clear()
    export_subnet(em, "L4-a1-f1", tmp_path / "b")  # already active: nothing to slice or restore
    assert calls == []


def test_a_non_finite_merged_tensor_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    em = _elastic()
    with torch.no_grad():
        em.elastic_linears(3)["down_proj"].base.weight[0, 127] = float("nan")  # an MLP channel that width 0.5 drops
    with pytest.raises(NonFiniteWeightError, match=r"model\.layers\.1\.mlp\.down_proj\.weight \(layer 3 of the elastic model\)"):
        export_subnet(em, "L2-a1-f1", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    export_subnet(em, "L2-a1-f0.5", tmp_path / "y")  # the NaN is cut away
