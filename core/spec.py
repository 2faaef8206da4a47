"""The one shape vocabulary: ``SubnetSpec`` with a canonical key, and the shape space of a model."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

from core.errors import ConfigError

DEFAULT_WIDTHS: tuple[float, ...] = (1.0, 0.875, 0.75, 0.625)
_KEY_RE = re.compile(r"^L(?P<n>\d+)-a(?P<a>\d*\.?\d+)-f(?P<f>\d*\.?\d+)$")


def normalise_width(w: float) -> float:
    """A width rounded to 6 significant digits, the precision of its key (``2/3`` → ``0.666667``).

    Every width in a spec or a ladder is stored normalised, so a shape parsed back from its key is equal to
    the shape that made the key, also for ladders such as ``1, 2/3, 1/3``.
    """
    return float(format(float(w), ".6g"))


def format_width(w: float) -> str:
    """Canonical text of a width: shortest decimal at 6 significant digits, ``1`` for full width (``0.875``)."""
    return format(normalise_width(w), "g") if w != 1 else "1"


def parse_widths(text: str | Sequence[float]) -> tuple[float, ...]:
    """Parse a width ladder ``"1,0.875,0.75"`` (or ``7/8``); sorted descending, must contain 1."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        ws = sorted({normalise_width(float(Fraction(str(x).strip()))) for x in items if str(x).strip()}, reverse=True)
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
            object.__setattr__(self, name, normalise_width(w))

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
    """All shapes of one model: depth in [min_layers, max_layers], an MLP ladder and an attention ladder.

    ``widths`` is the MLP ladder; ``attn_widths`` the attention ladder (``None`` = the same as ``widths``). The
    attention ladder belongs to the model: its unit counts (KV groups, or query heads per KV group) decide which
    fractions exist (``1, 2/3, 1/3`` for 3 units), see ``core.strategy.units.default_attn_ladder``.
    """

    max_layers: int
    min_layers: int
    widths: tuple[float, ...] = DEFAULT_WIDTHS
    attn_widths: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.min_layers <= self.max_layers:
            raise ConfigError(f"need 1 <= min_layers <= max_layers, got {self.min_layers}, {self.max_layers}")
        object.__setattr__(self, "widths", parse_widths(self.widths))
        attn = parse_widths(self.attn_widths) if self.attn_widths is not None else self.widths
        object.__setattr__(self, "attn_widths", attn)

    @property
    def ffn_widths(self) -> tuple[float, ...]:
        """The MLP ladder (the same tuple as ``widths``)."""
        return self.widths

    @property
    def attn_ladder(self) -> tuple[float, ...]:
        """The attention ladder (never ``None``)."""
        assert self.attn_widths is not None
        return self.attn_widths

    def ladder(self, module: str) -> tuple[float, ...]:
        """The ladder of ``module`` (``"attn"`` or ``"ffn"``)."""
        if module == "attn":
            return self.attn_ladder
        if module == "ffn":
            return self.widths
        raise ConfigError(f"unknown module {module!r}: expected attn or ffn")

    def to_dict(self) -> dict[str, object]:
        """JSON form: ``attn_widths`` only when it differs from ``widths`` (older files stay readable)."""
        d: dict[str, object] = {"max_layers": self.max_layers, "min_layers": self.min_layers, "widths": list(self.widths)}
        if self.attn_ladder != self.widths:
            d["attn_widths"] = list(self.attn_ladder)
        return d

    @property
    def largest(self) -> SubnetSpec:
        return SubnetSpec(self.max_layers, 1.0, 1.0)

    @property
    def smallest(self) -> SubnetSpec:
        return SubnetSpec(self.min_layers, self.attn_ladder[-1], self.widths[-1])

    @staticmethod
    def _in(w: float, ladder: tuple[float, ...]) -> bool:
        return any(abs(normalise_width(w) - x) < 1e-9 for x in ladder)

    def validate(self, spec: SubnetSpec | str) -> SubnetSpec:
        """Return the spec if it belongs to this space, else raise ``ConfigError`` saying why."""
        s = SubnetSpec.parse(spec) if isinstance(spec, str) else spec
        if not self.min_layers <= s.num_layers <= self.max_layers:
            raise ConfigError(f"shape {s.key}: num_layers {s.num_layers} outside [{self.min_layers}, {self.max_layers}]")
        for name, w, ladder in (("attn_width", s.attn_width, self.attn_ladder), ("ffn_width", s.ffn_width, self.widths)):
            if not self._in(w, ladder):
                text = ", ".join(format_width(x) for x in ladder)
                raise ConfigError(f"shape {s.key}: {name} {format_width(w)} not in the width ladder [{text}]")
        return s

    def __contains__(self, spec: object) -> bool:
        if not isinstance(spec, SubnetSpec | str):
            return False
        try:
            self.validate(spec)
        except ConfigError:
            return False
        return True

    def __iter__(self) -> Iterator[SubnetSpec]:
        for n in range(self.max_layers, self.min_layers - 1, -1):
            for a in self.attn_ladder:
                for f in self.widths:
                    yield SubnetSpec(n, a, f)

    def __len__(self) -> int:
        return (self.max_layers - self.min_layers + 1) * len(self.attn_ladder) * len(self.widths)

    def width_index(self, w: float, module: str = "ffn") -> int:
        """Position of ``w`` in the ladder of ``module`` (for one-hot encodings)."""
        ladder = self.ladder(module)
        for i, x in enumerate(ladder):
            if abs(normalise_width(w) - x) < 1e-9:
                return i
        raise ConfigError(f"{module} width {w} not in ladder {ladder}")
