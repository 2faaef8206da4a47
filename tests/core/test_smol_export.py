"""Integration: a checkpoint with trained-looking adapters exports subnets whose stock HF logits match the elastic model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from core.checkpoint import open_checkpoint, save_checkpoint
from core.export.writer import export_subnet
from tests.core.test_finetune_recipe import tiny_base, tiny_cfg, trainee_for


@pytest.mark.parametrize("shape", ["L4-a1-f1", "L3-a0.5-f0.75"])
def test_exported_subnet_matches_elastic_with_adapters(tmp_path: Path, shape: str) -> None:
    base = tiny_base(tmp_path)
    cfg = tiny_cfg()
    t = trainee_for(base, cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in t.smol.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    ck = open_checkpoint(save_checkpoint(tmp_path / "ckpt", t, base, cfg.to_dict(), step=0, tokens_seen=0))
    res = export_subnet(ck.elastic, shape, tmp_path / "subnet", source={"checkpoint_sha256": ck.checkpoint_sha256})
    stock = AutoModelForCausalLM.from_pretrained(str(res.path)).eval()
    ids = torch.randint(0, 97, (2, 9))
    ck.elastic.set_shape(shape)
    with torch.no_grad():
        torch.testing.assert_close(stock(input_ids=ids).logits, ck.elastic(ids), rtol=1e-4, atol=1e-4)
        ck.smol.detach(ck.elastic)  # type: ignore[union-attr]
        assert not torch.allclose(stock(input_ids=ids).logits, ck.elastic(ids), atol=1e-3)  # the adapters were merged
