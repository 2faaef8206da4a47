"""The one shape vocabulary: ``SubnetSpec`` with a canonical key, and the shape space of a model."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

from core.errors import ConfigError

DEFAULT_WIDTHS: tuple[float, ...] = (1.0, 0.875, 0.75, 0.625)
_KEY_RE = re.compile(r"^L(?P<n>\d+)-a(?P<a>\d*\.?\d+)-f(?P<f>\d*\.?\d+)$")


def format_width(w: float) -> str:
    """Canonical text of a width: shortest exact decimal, ``1`` for full width (e.g. ``0.875``)."""
    return format(float(w), "g") if w != 1 else "1"


def parse_widths(text: str | Sequence[float]) -> tuple[float, ...]:
    """Parse a width ladder ``"1,0.875,0.75"`` (or ``7/8``); sorted descending, must contain 1."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        ws = sorted({float(Fraction(str(x).strip())) for x in items if str(x).strip()}, reverse=True)
    except (ValueError, ZeroDivisionError) as e:
        raise ConfigError(f"bad width ladder {text!r}: {e}") from None
    if not ws or ws[0] != 1.0:
        raise ConfigError(f"width ladder {text!r} must include 1")
    if ws[-1] <= 0:
        raise ConfigError(f"widths must be in (0, 1], got {text!r}")
    return tuple(ws)


@dataclass(frozen=True, order=True)
class SubnetSpec:
    """A shape: kept decoder layers and the kept fraction of attention (KV groups) and MLP channels."""

    num_layers: int
    attn_width: float = 1.0
    ffn_width: float = 1.0

    def __post_init__(self) -> None:
        if self.num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {self.num_layers}")
        for name in ("attn_width", "ffn_width"):
            w = getattr(self, name)
            if not 0 < w <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {w}")
            object.__setattr__(self, name, float(w))

    @property
    def key(self) -> str:
        """Canonical key, e.g. ``L8-a0.75-f0.625``."""
        return f"L{self.num_layers}-a{format_width(self.attn_width)}-f{format_width(self.ffn_width)}"

    def __str__(self) -> str:
        return self.key

    @classmethod
    def parse(cls, key: str) -> SubnetSpec:
        """Parse a canonical (or non-canonical, e.g. ``a1.0``) key; raises ``ConfigError`` naming the problem."""
        m = _KEY_RE.match(key.strip())
        if not m:
            raise ConfigError(f"bad shape key {key!r}: expected like 'L8-a0.75-f0.625'")
        return cls(int(m["n"]), float(m["a"]), float(m["f"]))


@dataclass(frozen=True)
class ShapeSpace:
    """All shapes of one model: depth in [min_layers, max_layers], widths from one ladder (per module type)."""

    max_layers: int
    min_layers: int
    widths: tuple[float, ...] = DEFAULT_WIDTHS

    def __post_init__(self) -> None:
        if not 1 <= self.min_layers <= self.max_layers:
            raise ConfigError(f"need 1 <= min_layers <= max_layers, got {self.min_layers}, {self.max_layers}")
        object.__setattr__(self, "widths", parse_widths(self.widths))

    @property
    def largest(self) -> SubnetSpec:
        return SubnetSpec(self.max_layers, 1.0, 1.0)

    @property
    def smallest(self) -> SubnetSpec:
        return SubnetSpec(self.min_layers, self.widths[-1], self.widths[-1])

    def _width_ok(self, w: float) -> bool:
        return any(abs(w - x) < 1e-9 for x in self.widths)

    def validate(self, spec: SubnetSpec | str) -> SubnetSpec:
        """Return the spec if it belongs to this space, else raise ``ConfigError`` saying why."""
        s = SubnetSpec.parse(spec) if isinstance(spec, str) else spec
        if not self.min_layers <= s.num_layers <= self.max_layers:
            raise ConfigError(f"shape {s.key}: num_layers {s.num_layers} outside [{self.min_layers}, {self.max_layers}]")
        ladder = ", ".join(format_width(w) for w in self.widths)
        if not self._width_ok(s.attn_width):
            raise ConfigError(f"shape {s.key}: attn_width {format_width(s.attn_width)} not in the width ladder [{ladder}]")
        if not self._width_ok(s.ffn_width):
            raise ConfigError(f"shape {s.key}: ffn_width {format_width(s.ffn_width)} not in the width ladder [{ladder}]")
        return s

    def __iter__(self) -> Iterator[SubnetSpec]:
        for n in range(self.max_layers, self.min_layers - 1, -1):
            for a in self.widths:
                for f in self.widths:
                    yield SubnetSpec(n, a, f)

    def __len__(self) -> int:
        return (self.max_layers - self.min_layers + 1) * len(self.widths) ** 2

    def width_index(self, w: float) -> int:
        """Position of ``w`` in the ladder (for one-hot encodings)."""
        for i, x in enumerate(self.widths):
            if abs(w - x) < 1e-9:
                return i
        raise ConfigError(f"width {w} not in ladder {self.widths}")
