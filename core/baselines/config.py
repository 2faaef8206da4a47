"""Typed settings shared by every baseline builder (calibration windows, depth range, width ladder)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from core.errors import ConfigError
from core.spec import parse_widths
from core.strategy.config import BIAS_MODULES, check_calibration_fields, parse_bias_modules

AngularToken = Literal["last", "all"]


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of one baseline run.

    - Depth methods produce depths ``[min_layers, L]`` at width 1 only; width methods produce the ``widths``
      ladder at full depth only (their strategies' spaces say so).
    - Calibration data: consecutive ``window``-token windows from the start of the calibration stream, at most
      ``num_windows`` of them and within the first ``max_tokens`` tokens (as Stage 1 takes them).
    - ``protect_first`` / ``protect_last``: blocks a depth method never removes; ``None`` = the method's
      published default (see each module). ``angular_token``: ``last`` (the paper: final token of each window)
      or ``all`` (mean over every position). ``allocation`` / ``bias_modules``: FLAP's unit allocation and which
      modules get compensation biases.
    """

    min_layers: int = 1
    widths: tuple[float, ...] = (1.0,)
    window: int = 128
    num_windows: int | None = 32
    max_tokens: int | None = None
    batch_size: int = 8
    protect_first: int | None = None
    protect_last: int | None = None
    angular_token: AngularToken = "last"
    allocation: str = "uniform"
    bias_modules: tuple[str, ...] = BIAS_MODULES

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", parse_widths(self.widths))
        object.__setattr__(self, "bias_modules", parse_bias_modules(self.bias_modules))
        check_calibration_fields(self)
        for name in ("protect_first", "protect_last"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"{name} must be >= 0 (or unset for the method default), got {v}")
        if self.angular_token not in ("last", "all"):
            raise ConfigError(f"angular_token must be 'last' or 'all', got {self.angular_token!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-native form (lists, not tuples) for strategy metadata."""
        d = asdict(self)
        d.update(widths=list(self.widths), bias_modules=list(self.bias_modules))
        return d
