"""Stage 1 settings, torch-free (``amoeba calibrate --help`` reads its defaults from here).

``CalibrationConfig`` and the small vocabularies it validates against (width allocations, compensation-bias
modules, the depth range) live here; ``core.strategy.calibrate`` runs the recipe and re-exports the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError
from core.spec import parse_widths
from core.strategy.units import check_attn_unit, default_attn_ladder, default_ffn_ladder

if TYPE_CHECKING:
    from core.model.loader import ModelInfo

ALLOCATIONS = ("uniform", "global")
BIAS_MODULES = ("attn", "ffn")
#: calibration tokens Stage 1 reads by default: the bundled strategies were calibrated on 16384 (tiny) and 4096
#: (SmolLM2) tokens; a whole calibration split of the corpus is far slower for no measured gain
DEFAULT_MAX_TOKENS = 16384


def parse_bias_modules(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"attn,ffn"`` / ``"both"`` / ``"attn"`` / ``"ffn"`` / ``"none"`` → canonical tuple of modules."""
    items = [x.strip().lower() for x in (text.split(",") if isinstance(text, str) else text) if x.strip()]
    if items in (["none"], []):
        return ()
    if items == ["both"]:
        return BIAS_MODULES
    bad = [x for x in items if x not in BIAS_MODULES]
    if bad:
        raise ConfigError(f"bad bias modules {bad}: use attn, ffn, both or none")
    return tuple(m for m in BIAS_MODULES if m in items)


def check_depth_range(num_layers: int, min_layers: int, keep_last: int) -> None:
    """Raise ``ConfigError`` unless 0 ≤ keep_last ≤ L and max(1, keep_last) ≤ min_layers ≤ L."""
    if not 0 <= keep_last <= num_layers:
        raise ConfigError(f"keep_last must be in [0, {num_layers}] for a {num_layers}-layer model, got {keep_last}")
    lo = max(1, keep_last)
    if not lo <= min_layers <= num_layers:
        raise ConfigError(f"min_layers must be in [{lo}, {num_layers}] (model has {num_layers} layers, keep_last {keep_last}), got {min_layers}")


def check_calibration_fields(cfg: Any) -> None:
    """``ConfigError`` unless the calibration fields that ``CalibrationConfig`` and ``BaselineConfig`` share are
    in range: ``min_layers`` ≥ 1, ``window`` ≥ 2, ``batch_size`` ≥ 1, ``max_tokens`` / ``num_windows`` unset or ≥ 1,
    ``allocation`` one of ``ALLOCATIONS``."""
    for name, lo in (("min_layers", 1), ("window", 2), ("batch_size", 1)):
        if getattr(cfg, name) < lo:
            raise ConfigError(f"{name} must be >= {lo}, got {getattr(cfg, name)}")
    for name in ("max_tokens", "num_windows"):
        v = getattr(cfg, name)
        if v is not None and v < 1:
            raise ConfigError(f"{name} must be >= 1 (or unset), got {v}")
    if cfg.allocation not in ALLOCATIONS:
        raise ConfigError(f"unknown allocation {cfg.allocation!r}: expected one of {', '.join(ALLOCATIONS)}")


@dataclass(frozen=True)
class CalibrationConfig:
    """Stage 1 settings. ``bias_modules`` defaults to attention only: measured on the default model
    (``bench/results/bias_compensation.json``), o_proj compensation lowers held-out perplexity of attention-narrowed
    shapes (e.g. 276.0 → 272.7 at L12-a0.625-f1) while down_proj compensation makes it slightly worse.

    Calibration data: consecutive ``window``-token windows from the start of the token stream, limited to the
    first ``max_tokens`` tokens (``DEFAULT_MAX_TOKENS``) and to ``num_windows`` windows (``None`` = no limit).

    Ladders: ``widths`` (MLP; also attention when ``attn_widths`` is unset) and ``attn_widths``; with neither
    set, what the model's unit counts allow (``default_ffn_ladder`` / ``default_attn_ladder``); see ``ladders``.
    """

    min_layers: int
    keep_last: int = 1
    widths: tuple[float, ...] | None = None
    allocation: str = "uniform"
    bias_modules: tuple[str, ...] = ("attn",)
    window: int = 256
    max_tokens: int | None = DEFAULT_MAX_TOKENS
    num_windows: int | None = None
    batch_size: int = 8
    use_cache: bool = True
    attn_widths: tuple[float, ...] | None = None
    attn_unit: str = "kv_group"

    def __post_init__(self) -> None:
        check_attn_unit(self.attn_unit)
        if self.widths is not None:
            object.__setattr__(self, "widths", parse_widths(self.widths))
        if self.attn_widths is not None:
            object.__setattr__(self, "attn_widths", parse_widths(self.attn_widths))
        object.__setattr__(self, "bias_modules", parse_bias_modules(self.bias_modules))
        check_calibration_fields(self)
        if self.keep_last < 0:
            raise ConfigError(f"keep_last must be >= 0, got {self.keep_last}")

    def check_model(self, info: ModelInfo) -> None:
        """Raise ``ConfigError`` if these settings do not fit the model."""
        check_depth_range(info.num_layers, self.min_layers, self.keep_last)
        if self.window > info.max_position_embeddings:
            raise ConfigError(f"window {self.window} exceeds the model's max_position_embeddings {info.max_position_embeddings}")

    def ladders(self, info: ModelInfo) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(MLP ladder, attention ladder) for ``info``: the given ones; an unset attention ladder is ``widths`` when
        that is given (one ladder for both, as in a ``ShapeSpace``), else both are the model's defaults."""
        ffn = self.widths if self.widths is not None else default_ffn_ladder(info)
        if self.attn_widths is not None:
            return ffn, self.attn_widths
        attn = self.widths if self.widths is not None else default_attn_ladder(info, self.attn_unit)
        return ffn, attn

    def to_dict(self) -> dict[str, Any]:
        """JSON-native form (lists, not tuples) for strategy metadata."""
        d = asdict(self)
        d.update(widths=None if self.widths is None else list(self.widths), bias_modules=list(self.bias_modules),
                 attn_widths=None if self.attn_widths is None else list(self.attn_widths))
        return d
