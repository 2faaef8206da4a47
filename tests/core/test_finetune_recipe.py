"""The fine-tuning recipe: exact resume after a kill, time limit, refusal of a mismatched run dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import ConfigError
from core.finetune.config import FinetuneConfig
from core.finetune.recipe import StepInfo, finetune
from core.smol.assemble import Trainee, build_trainee, resolve_base_dtype
from core.smol.config import SmolConfig
from core.strategy.schema import Strategy
from tests.factories import tiny_checkpoint


def tiny_base(root: Path, seed: int = 0) -> Path:
    """The fine-tuning tests' base: ``tiny_checkpoint`` at ``root/base`` with widths 1, 0.75, 0.5."""
    return tiny_checkpoint(root, name="base", widths=(1.0, 0.75, 0.5), seed=seed)


def tiny_cfg(**kw: object) -> FinetuneConfig:
    base = dict(adapter=SmolConfig(num_experts=3, rank=2, top_k=2), shapes_per_step=3, seq_len=12, batch_size=4, max_steps=6,
                warmup_steps=2, checkpoint_every=2, eval_every=3, eval_batches=1, lr=5e-3, threads=1)
    base.update(kw)
    return FinetuneConfig(**base)  # type: ignore[arg-type]


def tiny_tokens(n: int = 4000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, 97, size=n).astype(np.uint16)


def trainee_for(base: Path, cfg: FinetuneConfig) -> Trainee:
    return build_trainee(base, Strategy.load(base / "strategy"), cfg.adapter, seed=cfg.seed)


class Killed(Exception):
    pass


def test_resume_after_kill_equals_uninterrupted(tmp_path: Path) -> None:
    base, cfg, tokens = tiny_base(tmp_path), tiny_cfg(), tiny_tokens()
    ref = trainee_for(base, cfg)
    seen: list[StepInfo] = []
    res = finetune(cfg, ref, tokens, tmp_path / "a", val_tokens=tokens, on_step=seen.append)
    assert res.finished and res.steps == 6 and res.tokens_seen == 6 * 48
    assert [s.step for s in seen] == list(range(1, 7)) and seen[2].val is not None and seen[1].val is None
    assert [x.key for x in seen[0].losses][:2] == ["L4-a1-f1", "L2-a0.5-f0.5"] and len(seen[0].losses) == 3
    assert any(float(v.abs().sum()) > 0 for k, v in ref.smol.state_dict().items() if k.endswith(".B"))  # it trained

    def kill_at_3(s: StepInfo) -> None:
        if s.step == 3:
            raise Killed  # after step 3's update, before its checkpoint is the next one (step 4): resume from 2

    with pytest.raises(Killed):
        finetune(cfg, trainee_for(base, cfg), tokens, tmp_path / "b", on_step=kill_at_3)
    resumed = trainee_for(base, cfg)  # a fresh process: new model, fresh adapters
    res2 = finetune(cfg, resumed, tokens, tmp_path / "b")
    assert res2.finished and res2.steps == 6 and res2.tokens_seen == res.tokens_seen
    a, b = ref.smol.state_dict(), resumed.smol.state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7)


def test_time_limit_checkpoints_and_stops(tmp_path: Path) -> None:
    base, tokens = tiny_base(tmp_path), tiny_tokens()
    cfg = tiny_cfg(max_minutes=0.0, checkpoint_every=100)
    res = finetune(cfg, trainee_for(base, cfg), tokens, tmp_path / "run")
    assert not res.finished and res.steps == 1
    assert (tmp_path / "run" / "checkpoint" / "state.json").is_file()
    res2 = finetune(tiny_cfg(checkpoint_every=100, max_steps=2), trainee_for(base, cfg), tokens, tmp_path / "run")
    assert res2.finished and res2.steps == 2


def test_mismatched_run_dir_is_refused(tmp_path: Path) -> None:
    base, tokens = tiny_base(tmp_path), tiny_tokens()
    cfg = tiny_cfg(max_steps=2)
    finetune(cfg, trainee_for(base, cfg), tokens, tmp_path / "run")
    other = tiny_cfg(max_steps=4, adapter=SmolConfig(num_experts=2, rank=2, top_k=1))
    with pytest.raises(ConfigError, match="different config fields \\['adapter'\\]"):
        finetune(other, trainee_for(base, other), tokens, tmp_path / "run")


def test_ablation_switches_change_the_objective(tmp_path: Path) -> None:
    base, tokens = tiny_base(tmp_path), tiny_tokens()
    results = {}
    for name, cfg in {"full": tiny_cfg(max_steps=1), "no_distill": tiny_cfg(max_steps=1, distill=False),
                      "lora": tiny_cfg(max_steps=1, adapter=SmolConfig(mixture="lora", rank=2))}.items():
        seen: list[StepInfo] = []
        t = trainee_for(base, cfg)
        finetune(cfg, t, tokens, tmp_path / name, on_step=seen.append)
        results[name] = (seen[0].losses, t)
    full, no_distill = results["full"][0], results["no_distill"][0]
    assert full[0].loss == pytest.approx(no_distill[0].loss)  # the largest shape is plain CE either way
    assert full[1].loss != pytest.approx(no_distill[1].loss)  # soft CE vs CE on the smallest
    assert results["lora"][1].smol.router is None


def test_bf16_base_and_unavailable_quantisation(tmp_path: Path) -> None:
    base, tokens = tiny_base(tmp_path), tiny_tokens()
    cfg = tiny_cfg(max_steps=1, base_dtype="bfloat16")
    t = build_trainee(base, Strategy.load(base / "strategy"), cfg.adapter, dtype=resolve_base_dtype(cfg.base_dtype))
    assert t.elastic.hf.lm_head.weight.dtype == torch.bfloat16 and t.smol.deltas["layers.0.q_proj"].A.dtype == torch.float32
    res = finetune(cfg, t, tokens, tmp_path / "run")
    assert res.finished
    with pytest.raises(ConfigError, match="int4 is unavailable"):
        resolve_base_dtype("int4")
