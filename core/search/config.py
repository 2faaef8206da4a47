"""Settings of a search and of its accuracy metric, torch-free (``amoeba search --help`` reads their defaults).

``OptunaConfig`` (one Optuna search, or one worker's share of a shared study) and ``MetricSettings`` (what an
accuracy metric factory may need); ``core.search.optuna_search`` and ``core.search.metrics`` re-export them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.errors import ConfigError

MC_SCORES = ("acc_norm", "acc", "macro_acc")


@dataclass(frozen=True)
class OptunaConfig:
    """How to run one Optuna search (or one worker's share of a shared study)."""

    n_trials: int = 64
    explore_trials: int = 20
    polish_starts: int = 5
    seed: int | None = 0
    sampler: Literal["tpe", "nsga2"] = "tpe"
    parametrization: Literal["budget", "natural"] = "budget"
    storage: str | None = None
    study_name: str | None = None
    n_startup_trials: int = 10

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise ConfigError(f"n_trials must be >= 1, got {self.n_trials}")
        if self.explore_trials < 1 or self.polish_starts < 0:
            raise ConfigError(f"explore_trials must be >= 1 and polish_starts >= 0, got {self.explore_trials}, {self.polish_starts}")
        if self.sampler not in ("tpe", "nsga2"):
            raise ConfigError(f"sampler must be 'tpe' or 'nsga2', got {self.sampler!r}")
        if self.parametrization not in ("budget", "natural"):
            raise ConfigError(f"parametrization must be 'budget' or 'natural', got {self.parametrization!r}")
        if self.storage is not None and self.study_name is None:
            raise ConfigError("a study name is required with a persistent storage (so workers can share it)")


@dataclass(frozen=True)
class MetricSettings:
    """Everything a metric factory may need (unused fields are ignored by a given metric)."""

    window: int = 256
    max_windows: int | None = None
    batch_size: int = 4
    calib_text: Path | None = None
    data_dir: Path | None = None
    limit: int | None = None
    seed: int | None = None
    mc_score: str = "acc_norm"
