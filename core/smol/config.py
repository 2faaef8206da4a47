"""Typed configuration of the SMoL adapters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.errors import ConfigError

Mixture = Literal["smol", "lora"]


def _targets() -> tuple[str, ...]:
    """Every adaptable linear (``core.elastic.model.TARGETS``), imported on use so the config stays torch-free."""
    from core.elastic.model import TARGETS

    return TARGETS


@dataclass(frozen=True)
class SmolConfig:
    """Adapters on every targeted linear of every layer.

    ``mixture="smol"``: ``num_experts`` LoRA experts mixed by one shape router (top-``top_k`` then softmax).
    ``mixture="lora"``: the ablation baseline, one LoRA shared by every shape (E = 1, no router).
    The update of a linear is ``scale * B_eff @ A_eff`` with ``scale = alpha / rank``.
    """

    mixture: Mixture = "smol"
    num_experts: int = 5
    rank: int = 8
    alpha: float = 16.0
    top_k: int = 2
    targets: tuple[str, ...] = field(default_factory=_targets)
    router_noise_std: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        if self.mixture not in ("smol", "lora"):
            raise ConfigError(f"mixture must be 'smol' or 'lora', got {self.mixture!r}")
        if self.rank < 1:
            raise ConfigError(f"adapter rank must be >= 1, got {self.rank}")
        if self.num_experts < 1:
            raise ConfigError(f"num_experts must be >= 1, got {self.num_experts}")
        if self.mixture == "smol" and not 1 <= self.top_k <= self.num_experts:
            raise ConfigError(f"top_k must be in [1, num_experts={self.num_experts}], got {self.top_k}")
        if self.router_noise_std < 0:
            raise ConfigError(f"router_noise_std must be >= 0, got {self.router_noise_std}")
        known = _targets()
        bad = [t for t in self.targets if t not in known]
        if bad or not self.targets:
            raise ConfigError(f"adapter targets {bad or '[]'} invalid: choose from {', '.join(known)}")

    @property
    def experts(self) -> int:
        """Experts per linear actually built (1 for the single-LoRA ablation)."""
        return 1 if self.mixture == "lora" else self.num_experts

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["targets"] = list(self.targets)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SmolConfig:
        try:
            return cls(**{**d, "targets": tuple(d.get("targets", _targets()))})
        except TypeError as e:
            raise ConfigError(f"bad adapter config: {e}") from None
