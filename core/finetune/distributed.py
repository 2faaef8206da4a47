"""Data parallelism through ``torch.distributed`` (gloo on CPU, nccl on GPUs) and DDP."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from core.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job (``world_size == 1``: no collectives at all)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mean(self, x: float) -> float:
        """Mean of a scalar over ranks."""
        if self.world_size == 1:
            return x
        t = torch.tensor([x], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is true on any rank (e.g. out of time)."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_from_env(device: str = "cpu") -> DistContext:
    """Join the process group described by torchrun's env (``WORLD_SIZE`` > 1); else a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)  # so that "cuda" means this rank's GPU
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank)


def shard(batch: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's contiguous share of the global batch ``[B, T]`` (``B`` must divide by the world size)."""
    b = batch.shape[0]
    if b % ctx.world_size:
        raise ConfigError(f"global batch size {b} is not divisible by the {ctx.world_size} data-parallel ranks")
    per = b // ctx.world_size
    return batch[ctx.rank * per : (ctx.rank + 1) * per]


def wrap(model: nn.Module, ctx: DistContext) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[bool], AbstractContextManager[object]]]:
    """``(forward, sync)``: DDP forward and ``sync(last)`` = ``no_sync`` unless ``last`` (plain model when alone).

    ``find_unused_parameters`` is on because shallow shapes skip layers (and their adapters).
    """
    if ctx.world_size == 1:
        return model, lambda last: nullcontext()
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [ctx.local_rank] if next(model.parameters()).is_cuda else None
    ddp = DDP(model, device_ids=ids, find_unused_parameters=True, forward_sync_buffers=False)
    return ddp, lambda last: nullcontext() if last else ddp.no_sync()


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1 (for tests and single-node launches)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
