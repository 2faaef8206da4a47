"""Map a "% remaining parameters" target to one shape per method (the rule of the Table 1 analogue).

- A baseline takes the shape of its strategy whose decoder fraction is closest to the target (ties: the larger
  fraction, then the shape key). Depth methods choose a depth (width 1), width methods a width with
  ``attn_width == ffn_width`` (uniform pruning ratio) at full depth.
- AmoebaLLM takes, among all shapes of its space whose decoder fraction is within ``±tolerance`` (absolute,
  e.g. 0.02 = two percentage points) of the target, the one with the lowest calibration score (perplexity);
  ties: the larger fraction, then the key. When no shape is within the tolerance, the candidates are the
  shapes nearest to the target (all at the same distance), and the choice says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from core.baselines.params import remaining_fraction
from core.errors import ConfigError
from core.model.loader import ModelInfo
from core.spec import SubnetSpec
from core.strategy.schema import Strategy

_EPS = 1e-12


@dataclass(frozen=True)
class ShapeOption:
    """A shape and its decoder / total remaining-parameter fractions."""

    spec: SubnetSpec
    fraction: float
    total_fraction: float


@dataclass(frozen=True)
class TargetChoice:
    """The shape chosen for ``target``; ``rule`` says how, ``scores`` holds every candidate's score (if scored)."""

    target: float
    spec: SubnetSpec
    fraction: float
    total_fraction: float
    rule: str
    candidates: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec"] = self.spec.key
        d["candidates"] = list(self.candidates)
        return d


def shape_options(info: ModelInfo, strategy: Strategy, *, diagonal: bool) -> list[ShapeOption]:
    """Every shape of ``strategy``'s space (only ``attn_width == ffn_width`` when ``diagonal``) with its fractions."""
    out = []
    for spec in strategy.space:
        if diagonal and spec.attn_width != spec.ffn_width:
            continue
        f, t = remaining_fraction(info, spec, strategy)
        out.append(ShapeOption(spec, f, t))
    return out


def _check(options: Sequence[ShapeOption], target: float) -> None:
    if not options:
        raise ConfigError("no shapes to choose from")
    if not 0 < target <= 1:
        raise ConfigError(f"target fraction must be in (0, 1], got {target}")


def closest_shape(options: Sequence[ShapeOption], target: float) -> TargetChoice:
    """The option whose fraction is nearest to ``target`` (ties: larger fraction, then key)."""
    _check(options, target)
    best = min(options, key=lambda o: (abs(o.fraction - target), -o.fraction, o.spec.key))
    return TargetChoice(target, best.spec, best.fraction, best.total_fraction, "closest fraction", (best.spec.key,))


def best_within(options: Sequence[ShapeOption], target: float, tolerance: float, score: Callable[[SubnetSpec], float]) -> TargetChoice:
    """The lowest-``score`` option within ``±tolerance`` of ``target`` (else among the nearest; see module doc)."""
    _check(options, target)
    if tolerance < 0:
        raise ConfigError(f"tolerance must be >= 0, got {tolerance}")
    within = [o for o in options if abs(o.fraction - target) <= tolerance + _EPS]
    rule = f"lowest calibration score within ±{tolerance:g}"
    if not within:
        gap = min(abs(o.fraction - target) for o in options)
        within = [o for o in options if abs(o.fraction - target) <= gap + _EPS]
        rule = f"none within ±{tolerance:g}: lowest calibration score among the nearest (distance {gap:.4f})"
    scores = {o.spec.key: float(score(o.spec)) for o in within}
    best = min(within, key=lambda o: (scores[o.spec.key], -o.fraction, o.spec.key))
    return TargetChoice(target, best.spec, best.fraction, best.total_fraction, rule, tuple(o.spec.key for o in within), scores)
