"""Typed configuration of the one-for-all fine-tuning recipe (serialised into every checkpoint)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from core.errors import ConfigError
from core.smol.config import SmolConfig

BaseDtype = Literal["float32", "bfloat16", "int8", "int4"]


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything the recipe needs. ``batch_size`` is the global batch (split over data-parallel ranks).

    Ablation switches: ``adapter.mixture`` (smol | lora), ``balance`` (loss-magnitude balancing) and
    ``distill`` (soft CE against the largest shape; off → plain CE for every shape).
    """

    adapter: SmolConfig = field(default_factory=SmolConfig)
    shapes_per_step: int = 4
    distill: bool = True
    balance: bool = True
    temperature: float = 1.0
    seq_len: int = 256
    batch_size: int = 8
    max_steps: int = 300
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    checkpoint_every: int = 25
    eval_every: int = 50
    eval_batches: int = 4
    seed: int = 1234
    threads: int = 1
    max_minutes: float | None = None
    base_dtype: BaseDtype = "float32"
    with_calibration: bool = False
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.shapes_per_step < 2:
            raise ConfigError(f"shapes_per_step must be >= 2 (largest + smallest), got {self.shapes_per_step}")
        for name in ("seq_len", "batch_size", "max_steps", "checkpoint_every", "eval_every", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise ConfigError(f"seq_len must be >= 2, got {self.seq_len}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be cpu or cuda, got {self.device!r}")
        if self.base_dtype not in ("float32", "bfloat16", "int8", "int4"):
            raise ConfigError(f"base_dtype must be float32, bfloat16, int8 or int4, got {self.base_dtype!r}")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["adapter"] = self.adapter.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown fine-tuning config fields: {unknown}")
        return cls(**{**d, "adapter": SmolConfig.from_dict(d.get("adapter", {}))})

    def resume_compatible(self, other: FinetuneConfig) -> list[str]:
        """Names of the fields that must not change when resuming a run (empty when compatible)."""
        keys = ("adapter", "shapes_per_step", "distill", "balance", "temperature", "seq_len", "batch_size", "seed", "base_dtype", "with_calibration")
        return [k for k in keys if getattr(self, k) != getattr(other, k)]
