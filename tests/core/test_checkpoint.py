"""Checkpoint directory: save/open round trip, identity hash, base sha check, base+strategy dirs, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.checkpoint import ADAPTERS_FILE, CHECKPOINT_FILE, CheckpointError, base_reference, open_checkpoint, resolve_base, save_checkpoint
from core.data.paths import REPO_ROOT
from core.elastic.model import ElasticModel
from core.finetune.recipe import finetune
from core.model.loader import load_base_model
from core.strategy.schema import Strategy
from tests.core.test_finetune_recipe import tiny_base, tiny_cfg, tiny_tokens, trainee_for

SHAPES = ("L4-a1-f1", "L3-a0.75-f0.5", "L2-a0.5-f0.5")


@pytest.fixture
def trained(tmp_path: Path):  # noqa: ANN201
    base = tiny_base(tmp_path)
    cfg = tiny_cfg(max_steps=3)
    t = trainee_for(base, cfg)
    res = finetune(cfg, t, tiny_tokens(), tmp_path / "run")
    out = save_checkpoint(tmp_path / "ckpt", t, base, cfg.to_dict(), step=res.steps, tokens_seen=res.tokens_seen)
    return base, t, out


def _logits(el: ElasticModel, shape: str, ids: torch.Tensor) -> torch.Tensor:
    el.set_shape(shape)
    with torch.no_grad():
        return el(ids)


def test_round_trip_gives_the_trained_model(trained) -> None:  # noqa: ANN001
    base, t, out = trained
    assert sorted(p.name for p in out.iterdir()) == [ADAPTERS_FILE, CHECKPOINT_FILE, "strategy"]
    assert not out.with_name(out.name + ".tmp").exists()
    doc = json.loads((out / CHECKPOINT_FILE).read_text())
    assert doc["step"] == 3 and doc["tokens_seen"] == 3 * 48 and doc["base"]["sha256"] == t.base_sha256
    assert doc["training"]["adapter"]["num_experts"] == 3
    ck = open_checkpoint(out)
    assert ck.kind == "amoeba" and ck.base_dir == base and ck.tokenizer_dir is None and ck.smol is not None
    assert not ck.elastic.training and ck.strategy.space == t.strategy.space
    ids = torch.randint(0, 97, (2, 7))
    t.elastic.eval()
    for shape in SHAPES:
        torch.testing.assert_close(_logits(ck.elastic, shape, ids), _logits(t.elastic, shape, ids), rtol=1e-5, atol=1e-5)
    plain = ElasticModel(load_base_model(base)[0], Strategy.load(base / "strategy"))
    assert not torch.allclose(_logits(ck.elastic, SHAPES[1], ids), _logits(plain, SHAPES[1], ids), atol=1e-4)  # adapters act
    assert ck.checkpoint_sha256 == open_checkpoint(out).checkpoint_sha256


def test_identity_changes_with_adapters_and_wrong_base_is_refused(trained, tmp_path: Path) -> None:  # noqa: ANN001
    base, t, out = trained
    sha = open_checkpoint(out).checkpoint_sha256
    state = load_file(str(out / ADAPTERS_FILE))
    state["router.bias"] = state["router.bias"] + 1
    save_file(state, str(out / ADAPTERS_FILE))
    assert open_checkpoint(out).checkpoint_sha256 != sha
    w = load_file(str(base / "model.safetensors"))
    w["model.norm.weight"] = w["model.norm.weight"] * 1.01
    save_file(w, str(base / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="other base weights"):
        open_checkpoint(out)


def test_base_with_strategy_directory(tmp_path: Path) -> None:
    base = tiny_base(tmp_path)
    ck = open_checkpoint(base)
    assert ck.kind == "base+strategy" and ck.smol is None and ck.base_dir == base
    ids = torch.randint(0, 97, (1, 6))
    plain = ElasticModel(load_base_model(base)[0], Strategy.load(base / "strategy"))
    torch.testing.assert_close(_logits(ck.elastic, SHAPES[2], ids), _logits(plain, SHAPES[2], ids))
    sha = ck.checkpoint_sha256
    (base / "strategy" / "strategy.json").write_text((base / "strategy" / "strategy.json").read_text().replace('"naive"', '"naive2"'))
    assert open_checkpoint(base).checkpoint_sha256 != sha


def test_bad_checkpoints_name_the_problem(trained, tmp_path: Path) -> None:  # noqa: ANN001
    base, t, out = trained
    with pytest.raises(CheckpointError, match="not found"):
        open_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither an Amoeba checkpoint"):
        open_checkpoint(tmp_path / "empty")
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    (bad / ADAPTERS_FILE).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="adapters.safetensors"):
        open_checkpoint(bad)
    state = load_file(str(out / ADAPTERS_FILE))
    save_file({k: v for k, v in state.items() if not k.startswith("router")}, str(bad / ADAPTERS_FILE))
    with pytest.raises(CheckpointError, match="missing"):
        open_checkpoint(bad)
    doc = json.loads((out / CHECKPOINT_FILE).read_text())
    (bad / CHECKPOINT_FILE).write_text(json.dumps({**doc, "schema_version": 99}))
    with pytest.raises(CheckpointError, match="schema_version 99"):
        open_checkpoint(bad)
    (bad / CHECKPOINT_FILE).write_text("{")
    with pytest.raises(CheckpointError, match="corrupt"):
        open_checkpoint(bad)


def test_base_reference_is_relative_inside_the_repo(tmp_path: Path) -> None:
    assert base_reference(REPO_ROOT / "models" / "amoeba-tiny-base") == "models/amoeba-tiny-base"
    assert resolve_base("models/amoeba-tiny-base") == REPO_ROOT / "models" / "amoeba-tiny-base"
    assert base_reference(tmp_path) == str(tmp_path.resolve())
