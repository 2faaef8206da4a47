"""Search spaces: uniform shapes (``SubnetSpec``) and the larger per-layer-group space (``GroupedShape``).

A grouped shape splits the kept layers of a depth into G contiguous groups, each with its own attention and
MLP width. When every group has the same widths it *is* a ``SubnetSpec`` and carries the same canonical key,
so cached accuracies are shared. Grouped latency is composed from the uniform estimates (see ``LatencyView``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from core.errors import ConfigError
from core.latency import LatencyEstimate, LatencyModel
from core.spec import ShapeSpace, SubnetSpec, format_width

if TYPE_CHECKING:
    import optuna

    from core.elastic.model import ElasticModel

_GKEY_RE = re.compile(r"^L(?P<n>\d+)-a(?P<a>[\d.,]+)-f(?P<f>[\d.,]+)$")


@dataclass(frozen=True)
class GroupedShape:
    """Depth plus one attention and one MLP width per layer group (groups split the kept layers in order)."""

    num_layers: int
    attn_widths: tuple[float, ...]
    ffn_widths: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.attn_widths) != len(self.ffn_widths) or not self.attn_widths:
            raise ConfigError(f"grouped shape needs as many attention as MLP widths (>= 1), got {self.attn_widths}, {self.ffn_widths}")
        if self.num_layers < len(self.attn_widths):
            raise ConfigError(f"grouped shape: {self.num_layers} layers cannot form {len(self.attn_widths)} groups")
        for w in self.attn_widths + self.ffn_widths:
            SubnetSpec(self.num_layers, w, w)  # validates the range
        object.__setattr__(self, "attn_widths", tuple(float(w) for w in self.attn_widths))
        object.__setattr__(self, "ffn_widths", tuple(float(w) for w in self.ffn_widths))

    @property
    def groups(self) -> int:
        return len(self.attn_widths)

    def uniform(self) -> SubnetSpec | None:
        """The equivalent ``SubnetSpec`` when every group has the same widths, else ``None``."""
        if len(set(self.attn_widths)) == 1 and len(set(self.ffn_widths)) == 1:
            return SubnetSpec(self.num_layers, self.attn_widths[0], self.ffn_widths[0])
        return None

    @property
    def key(self) -> str:
        """``L8-a1,0.75-f0.875,0.625`` (the ``SubnetSpec`` key when all groups are equal)."""
        u = self.uniform()
        if u is not None:
            return u.key
        a = ",".join(format_width(w) for w in self.attn_widths)
        f = ",".join(format_width(w) for w in self.ffn_widths)
        return f"L{self.num_layers}-a{a}-f{f}"

    def __str__(self) -> str:
        return self.key

    def group_sizes(self) -> list[int]:
        """Kept layers per group: as even as possible, earlier groups take the remainder."""
        q, r = divmod(self.num_layers, self.groups)
        return [q + (1 if g < r else 0) for g in range(self.groups)]

    def split(self, kept_layers: tuple[int, ...]) -> list[tuple[tuple[int, ...], float, float]]:
        """``(layers, attn_width, ffn_width)`` per group for the kept-layer list of this depth."""
        if len(kept_layers) != self.num_layers:
            raise ConfigError(f"grouped shape {self.key}: got {len(kept_layers)} kept layers, expected {self.num_layers}")
        out, i = [], 0
        for g, size in enumerate(self.group_sizes()):
            out.append((tuple(kept_layers[i : i + size]), self.attn_widths[g], self.ffn_widths[g]))
            i += size
        return out

    @classmethod
    def parse(cls, key: str, groups: int | None = None) -> GroupedShape:
        """Parse a grouped key (or a plain ``SubnetSpec`` key, expanded to ``groups`` equal groups)."""
        m = _GKEY_RE.match(key.strip())
        if not m:
            raise ConfigError(f"bad grouped shape key {key!r}: expected like 'L8-a1,0.75-f0.875,0.625'")
        try:
            a = tuple(float(x) for x in m["a"].split(","))
            f = tuple(float(x) for x in m["f"].split(","))
        except ValueError:
            raise ConfigError(f"bad grouped shape key {key!r}: widths must be numbers") from None
        if groups is not None and len(a) == len(f) == 1:
            a, f = a * groups, f * groups
        return cls(int(m["n"]), a, f)


Shape = SubnetSpec | GroupedShape


class LatencyView:
    """Latency of any ``Shape`` from a ``LatencyModel``; uniform estimates are cached.

    Grouped latency = Σ_g (n_g / n) · estimate(L=n, widths of g): exact when latency is affine in the number of
    layers with a per-layer cost that depends on that layer's widths (DESIGN §5's decode/prefill model).
    Peak memory is composed the same way; ``in_range`` only when every part is in range.
    """

    def __init__(self, model: LatencyModel) -> None:
        self.model = model
        self._memo: dict[str, LatencyEstimate] = {}

    @property
    def gen_len(self) -> int:
        return self.model.gen_len

    def _uniform(self, spec: SubnetSpec) -> LatencyEstimate:
        est = self._memo.get(spec.key)
        if est is None:
            est = self._memo[spec.key] = self.model.estimate(spec)
        return est

    def estimate(self, shape: Shape) -> LatencyEstimate:
        if isinstance(shape, SubnetSpec):
            return self._uniform(shape)
        u = shape.uniform()
        if u is not None:
            return self._uniform(u)
        n = shape.num_layers
        parts = [(size / n, self._uniform(SubnetSpec(n, a, f))) for size, a, f in zip(shape.group_sizes(), shape.attn_widths, shape.ffn_widths, strict=True)]
        mems = [(w, e.peak_mem_mb) for w, e in parts]
        mem = None if any(m is None for _, m in mems) else sum(w * (m or 0.0) for w, m in mems)
        return LatencyEstimate(
            ttft_ms=sum(w * e.ttft_ms for w, e in parts),
            tpot_ms=sum(w * e.tpot_ms for w, e in parts),
            peak_mem_mb=mem,
            in_range=all(e.in_range for _, e in parts),
        )


Widths = tuple[tuple[float, ...], tuple[float, ...]]
"""(attention width per group, MLP width per group)."""


class SearchSpace(Protocol):
    """A space of shapes that can be enumerated and sampled by an Optuna trial (ordered integer parameters)."""

    @property
    def base(self) -> ShapeSpace: ...

    @property
    def groups(self) -> int: ...

    def __iter__(self) -> Iterator[Shape]: ...

    def __len__(self) -> int: ...

    def suggest(self, trial: optuna.trial.BaseTrial) -> Shape:
        """Draw depth and widths through ``trial.suggest_int``."""
        ...

    def suggest_widths(self, trial: optuna.trial.BaseTrial) -> Widths:
        """Draw the widths only (the depth is chosen by the caller, see ``at_depth``)."""
        ...

    def at_depth(self, widths: Widths, num_layers: int) -> Shape:
        """The shape with ``widths`` at depth ``num_layers``."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON description (stored on Optuna studies to refuse mismatched workers)."""
        ...


@dataclass(frozen=True)
class GroupedSpace:
    """Depth × (attention width, MLP width) per layer group: ``|depths| · |widths|^(2G)`` shapes.

    With one group this is exactly ``ShapeSpace`` (see ``UniformSpace``); its parameters are then named
    ``num_layers``, ``attn_idx``, ``ffn_idx`` (``attn_idx_<g>`` / ``ffn_idx_<g>`` per group otherwise).
    """

    base: ShapeSpace
    groups: int = 1

    def __post_init__(self) -> None:
        if self.groups < 1:
            raise ConfigError(f"groups must be >= 1, got {self.groups}")
        if self.base.min_layers < self.groups:
            raise ConfigError(f"{self.groups} layer groups need min_layers >= {self.groups}, got {self.base.min_layers}")

    def __iter__(self) -> Iterator[Shape]:
        wa, wf, g = self.base.attn_ladder, self.base.widths, self.groups
        for n in range(self.base.max_layers, self.base.min_layers - 1, -1):
            for a in itertools.product(wa, repeat=g):
                for f in itertools.product(wf, repeat=g):
                    yield self.at_depth((a, f), n)

    def __len__(self) -> int:
        depths = self.base.max_layers - self.base.min_layers + 1
        return depths * (len(self.base.attn_ladder) * len(self.base.widths)) ** self.groups

    def _name(self, module: str, g: int) -> str:
        return f"{module}_idx" if self.groups == 1 else f"{module}_idx_{g}"

    def suggest_widths(self, trial: optuna.trial.BaseTrial) -> Widths:
        wa, w = self.base.attn_ladder, self.base.widths
        a = tuple(wa[trial.suggest_int(self._name("attn", g), 0, len(wa) - 1)] for g in range(self.groups))
        f = tuple(w[trial.suggest_int(self._name("ffn", g), 0, len(w) - 1)] for g in range(self.groups))
        return a, f

    def suggest(self, trial: optuna.trial.BaseTrial) -> Shape:
        n = trial.suggest_int("num_layers", self.base.min_layers, self.base.max_layers)
        return self.at_depth(self.suggest_widths(trial), n)

    def at_depth(self, widths: Widths, num_layers: int) -> Shape:
        return _canonical(GroupedShape(num_layers, widths[0], widths[1]))

    def describe(self) -> dict[str, Any]:
        b = self.base
        d: dict[str, Any] = {"kind": "uniform" if self.groups == 1 else "grouped", "min_layers": b.min_layers, "max_layers": b.max_layers,
                             "widths": list(b.widths), "attn_widths": list(b.attn_ladder)}
        if self.groups > 1:
            d["groups"] = self.groups
        return d


@dataclass(frozen=True)
class UniformSpace(GroupedSpace):
    """Depth × attention width × MLP width: the shapes of ``base`` as ``SubnetSpec``s (one group)."""

    groups: int = 1

    def __post_init__(self) -> None:
        if self.groups != 1:
            raise ConfigError(f"a uniform space has exactly one layer group, got {self.groups}")
        super().__post_init__()


def _canonical(shape: GroupedShape) -> Shape:
    u = shape.uniform()
    return shape if u is None else u


def activate(elastic: ElasticModel, shape: Shape) -> None:
    """Activate ``shape`` on ``elastic``. Grouped shapes set per-layer widths after ``set_shape``.

    For a grouped shape ``set_shape`` activates the depth with the first group's widths (so anything keyed on
    the shape, like a SMoL router gate, sees that group), then the other groups' layers are re-sliced.
    """
    if isinstance(shape, SubnetSpec):
        elastic.set_shape(shape)
        return
    elastic.set_shape(SubnetSpec(shape.num_layers, shape.attn_widths[0], shape.ffn_widths[0]))
    elastic.set_layer_widths({layer: (a, f) for layers, a, f in shape.split(tuple(elastic.active_layers))[1:] for layer in layers})
