"""Which shapes to measure: the model's grid (thinned by depth step / max count) or a file of shape keys."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError
from core.spec import DEFAULT_WIDTHS, SubnetSpec, parse_widths
from profilers.source import ModelSource


@dataclass(frozen=True)
class GridOptions:
    """Depth from ``min_layers`` to L every ``depth_step`` (L always kept), MLP widths from ``widths``, attention
    widths from ``attn_widths`` (``None``: the source's attention ladder — its strategy's, else what its unit count
    allows, ``ModelSource.attn_ladder``), at most ``max_shapes``."""

    min_layers: int = 1
    widths: tuple[float, ...] = DEFAULT_WIDTHS
    depth_step: int = 1
    max_shapes: int | None = None
    attn_widths: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.min_layers < 1 or self.depth_step < 1:
            raise ConfigError(f"--min-layers and --depth-step must be >= 1, got {self.min_layers}, {self.depth_step}")
        if self.max_shapes is not None and self.max_shapes < 1:
            raise ConfigError(f"--max-shapes must be >= 1, got {self.max_shapes}")
        object.__setattr__(self, "widths", parse_widths(self.widths))
        if self.attn_widths is not None:
            object.__setattr__(self, "attn_widths", parse_widths(self.attn_widths))


def thin(shapes: list[SubnetSpec], n: int) -> list[SubnetSpec]:
    """``n`` shapes spread evenly over the list (first and last always kept), order preserved."""
    if n >= len(shapes):
        return list(shapes)
    if n == 1:
        return [shapes[0]]
    idx = sorted({round(i * (len(shapes) - 1) / (n - 1)) for i in range(n)})
    return [shapes[i] for i in idx]


def grid_shapes(source: ModelSource, opts: GridOptions) -> list[SubnetSpec]:
    """The grid of ``source`` (largest first); an exported subnet yields its own shape only."""
    if source.exported_shape is not None:
        return [source.exported_shape]
    top = source.info.num_layers
    if opts.min_layers > top:
        raise ConfigError(f"--min-layers {opts.min_layers} exceeds the model's {top} layers")
    depths = list(range(top, opts.min_layers - 1, -opts.depth_step))
    if depths[-1] != opts.min_layers:
        depths.append(opts.min_layers)
    attn = opts.attn_widths if opts.attn_widths is not None else source.attn_ladder()
    shapes = [SubnetSpec(n, a, f) for n in depths for a in attn for f in opts.widths]
    return thin(shapes, opts.max_shapes) if opts.max_shapes else shapes


def read_shapes_file(path: Path) -> list[SubnetSpec]:
    """Shape keys from a JSON list or one per line (``#`` comments); duplicates dropped, order kept."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"shapes file not found: {p}")
    text = p.read_text()
    if text.lstrip().startswith("["):
        try:
            keys = [str(k) for k in json.loads(text)]
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}: not a JSON list of shape keys ({e})") from None
    else:
        keys = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    out: list[SubnetSpec] = []
    for i, k in enumerate(k for k in keys if k):
        try:
            s = SubnetSpec.parse(k)
        except ConfigError as e:
            raise ConfigError(f"{p}: entry {i + 1}: {e}") from None
        if s not in out:
            out.append(s)
    if not out:
        raise ConfigError(f"{p}: no shape keys")
    return out


def resolve_shapes(shapes: str, source: ModelSource, opts: GridOptions) -> list[SubnetSpec]:
    """``grid`` or a file path; every shape is checked against the source."""
    out = grid_shapes(source, opts) if shapes == "grid" else read_shapes_file(Path(shapes))
    for s in out:
        source.check(s)
    if opts.max_shapes and shapes != "grid":
        out = thin(out, opts.max_shapes)
    return out
