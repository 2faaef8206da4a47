"""Run-directory checkpoints of a fine-tuning run (adapters + optimiser + counters), written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from core.atomic import atomic_directory
from core.errors import ConfigError
from core.smol.attach import SmolAdapters


def save_run_state(run_dir: Path, smol: SmolAdapters, opt: torch.optim.Optimizer, meta: dict[str, Any]) -> Path:
    """Write ``run_dir/checkpoint`` atomically (adapters, optimiser, ``state.json`` with counters and config)."""
    final = run_dir / "checkpoint"
    with atomic_directory(final) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in smol.state_dict().items()}, str(tmp / "adapters.safetensors"))
        torch.save(opt.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))
    return final


def has_run_state(run_dir: Path) -> bool:
    return (run_dir / "checkpoint" / "state.json").is_file() or (run_dir / "checkpoint.old" / "state.json").is_file()


def _run_ckpt(run_dir: Path) -> Path:
    ck = run_dir / "checkpoint"
    return ck if (ck / "state.json").is_file() else run_dir / "checkpoint.old"  # killed between the two renames


def read_run_meta(run_dir: Path) -> dict[str, Any]:
    """Counters and config of the run checkpoint in ``run_dir``."""
    f = _run_ckpt(run_dir) / "state.json"
    try:
        meta: dict[str, Any] = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot resume from {f}: {e}") from None
    return meta


def load_run_state(run_dir: Path, smol: SmolAdapters, opt: torch.optim.Optimizer) -> None:
    """Restore adapters and optimiser from the run checkpoint in ``run_dir``."""
    ck = _run_ckpt(run_dir)
    try:
        smol.load_state_dict(load_file(str(ck / "adapters.safetensors")))
        opt.load_state_dict(torch.load(ck / "optimizer.pt", weights_only=True))
    except (OSError, RuntimeError, ValueError) as e:
        raise ConfigError(f"cannot resume from {ck}: {e}") from None
