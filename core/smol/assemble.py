"""Assemble a frozen base + strategy + SMoL adapters (``Trainee``): what fine-tuning trains and what inference loads."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from core.elastic.model import ElasticModel
from core.errors import ConfigError
from core.model.loader import load_base_model, weights_sha256
from core.smol.attach import SmolAdapters, attach_smol
from core.smol.config import SmolConfig
from core.strategy.schema import Strategy


def resolve_base_dtype(name: str) -> torch.dtype:
    """``float32`` / ``bfloat16`` → torch dtype; 8/4-bit bases raise ``ConfigError`` saying why they are unavailable."""
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if name in ("int8", "int4"):
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError(f"base dtype {name} is unavailable: it needs bitsandbytes (not installed) and a CUDA GPU")
        raise ConfigError(f"base dtype {name} is unavailable: ElasticLinear slices base.weight directly and has no quantised path yet")
    raise ConfigError(f"unknown base dtype {name!r}: use float32 or bfloat16 (int8/int4 need bitsandbytes)")


@dataclass
class Trainee:
    """A frozen base wrapped with its strategy and adapters."""

    elastic: ElasticModel
    smol: SmolAdapters
    strategy: Strategy
    base_sha256: str


def freeze_base(elastic: ElasticModel, smol: SmolAdapters) -> None:
    """Only the adapters and router train; every base parameter is frozen."""
    for p in elastic.parameters():
        p.requires_grad_(False)
    for p in smol.parameters():
        p.requires_grad_(True)


def build_trainee(base_dir: Path, strategy: Strategy, adapter: SmolConfig, *, dtype: torch.dtype = torch.float32, seed: int = 0,
                  device: str = "cpu", base_sha256: str | None = None) -> Trainee:
    """Load the base (``dtype``), check the strategy was made for these weights, attach fresh adapters.

    Compensation biases are cast to the base dtype. The result is in eval mode with the base frozen.
    """
    sha = base_sha256 or weights_sha256(base_dir)
    hf, info = load_base_model(base_dir, dtype=dtype)
    strategy.check_model(info, sha)
    strategy = replace(strategy, biases={k: v.to(dtype) for k, v in strategy.biases.items()})
    elastic = ElasticModel(hf, strategy).to(device)
    smol = attach_smol(elastic, adapter, seed=seed)
    freeze_base(elastic, smol)
    elastic.eval()
    return Trainee(elastic, smol, strategy, sha)
