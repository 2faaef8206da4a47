"""Data parallelism: 2 gloo processes on half batches make the same update as 1 process on the whole batch."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from core.data.tokens import random_windows
from core.finetune.distributed import DistContext, free_port, shard, wrap
from core.finetune.recipe import finetune
from core.finetune.sampler import sandwich_shapes
from core.finetune.step import sandwich_step
from core.smol.attach import SmolAdapters
from tests.core.test_finetune_recipe import tiny_base, tiny_cfg, tiny_tokens, trainee_for

STEPS = 2


def _grads(smol: SmolAdapters) -> dict[str, torch.Tensor]:
    out = {}
    for k, d in smol.deltas.items():
        out[f"{k}.A"], out[f"{k}.B"] = d.A.grad.clone(), d.B.grad.clone()  # type: ignore[union-attr]
    assert smol.router is not None
    out["router.weight"] = smol.router.proj.weight.grad.clone()  # type: ignore[union-attr]
    return out


def _one_step_grads(root: Path, ctx: DistContext) -> dict[str, torch.Tensor]:
    """Gradients of one sandwich step on this rank's shard of the global batch (synced by DDP)."""
    cfg = tiny_cfg()
    t = trainee_for(root / "base", cfg)
    with torch.no_grad():  # non-zero B so that every adapter tensor gets a gradient
        for d in t.smol.deltas.values():
            d.B.normal_(0, 0.05, generator=torch.Generator().manual_seed(3))
    forward, sync = wrap(t.elastic, ctx)
    ids = shard(random_windows(tiny_tokens(), cfg.batch_size, cfg.seq_len, step=0, seed=cfg.seed), ctx)
    sandwich_step(forward, t.elastic.set_shape, ids, sandwich_shapes(t.strategy.space, 3, cfg.seed, 0), mean=ctx.mean, sync=sync)
    return _grads(t.smol)


def _worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ctx = DistContext(rank, world, rank)
        save_file(_one_step_grads(Path(root), ctx), str(Path(root) / f"grads{rank}.safetensors"))
        base, cfg = Path(root) / "base", tiny_cfg(max_steps=STEPS, checkpoint_every=100)
        t = trainee_for(base, cfg)
        finetune(cfg, t, tiny_tokens(), Path(root) / "run-ddp", ctx=ctx)
        save_file({k: v.contiguous() for k, v in t.smol.state_dict().items()}, str(Path(root) / f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one_process_on_the_concatenated_batch(tmp_path: Path) -> None:
    base = tiny_base(tmp_path)
    cfg = tiny_cfg(max_steps=STEPS, checkpoint_every=100)
    init = {k: v.clone() for k, v in trainee_for(base, cfg).smol.state_dict().items()}
    single = trainee_for(base, cfg)
    finetune(cfg, single, tiny_tokens(), tmp_path / "run-1")
    grads = _one_step_grads(tmp_path, DistContext())
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    g0, g1 = load_file(str(tmp_path / "grads0.safetensors")), load_file(str(tmp_path / "grads1.safetensors"))
    for k, g in grads.items():
        assert float(g.abs().sum()) > 0, k
        torch.testing.assert_close(g0[k], g, rtol=1e-4, atol=1e-7)  # averaged over ranks == whole-batch gradient
        torch.testing.assert_close(g1[k], g0[k], rtol=0, atol=0)
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    for k, v in single.smol.state_dict().items():
        torch.testing.assert_close(r1[k], r0[k], rtol=0, atol=0)  # replicas stay identical
        torch.testing.assert_close(r0[k], v, rtol=1e-3, atol=1e-5)
    assert any(not torch.equal(v, init[k]) for k, v in r0.items() if k.endswith(".B"))
