"""The ``Strategy`` data: kept layers per depth, kept units per width and layer, compensation biases.

On disk: ``strategy.json`` (indices + metadata, with ``schema_version``) and ``biases.safetensors``.
Widths are keyed by their canonical text (``format_width``); layers by their original index.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from core.atomic import atomic_directory
from core.errors import ConfigError, StrategyError
from core.model.loader import ModelInfo
from core.spec import ShapeSpace, format_width
from core.strategy.config import BIAS_MODULES

SCHEMA_VERSION = 1


def modules_of_bias_keys(keys: Iterable[str]) -> tuple[str, ...]:
    """The modules (of ``BIAS_MODULES``, in that order) that the bias tensor names ``keys`` belong to."""
    keys = list(keys)
    return tuple(m for m in BIAS_MODULES if any(str(k).startswith(f"{m}.") for k in keys))


def bias_key(module: str, width: float, layer: int) -> str:
    """Tensor name of one compensation bias, e.g. ``ffn.0.75.3``."""
    return f"{module}.{format_width(width)}.{layer}"


@dataclass
class Strategy:
    """Everything Stage 1 decided. Index lists are sorted ascending; width 1 keeps everything, no bias."""

    model: ModelInfo
    model_sha256: str
    space: ShapeSpace
    keep_last: int
    allocation: str
    depth: dict[int, tuple[int, ...]]
    attn: dict[str, tuple[tuple[int, ...], ...]]
    ffn: dict[str, tuple[tuple[int, ...], ...]]
    biases: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    #: what an attention unit is: a whole KV group, or one query head inside every KV group (``core.strategy.units``)
    attn_unit: str = "kv_group"

    def __post_init__(self) -> None:
        from core.strategy.units import check_attn_unit

        check_attn_unit(self.attn_unit)

    # ---- lookups -----------------------------------------------------------------------------------
    def kept_layers(self, num_layers: int) -> tuple[int, ...]:
        if num_layers not in self.depth:
            raise StrategyError(f"strategy has no layer set for depth {num_layers} (range {self.space.min_layers}..{self.space.max_layers})")
        return self.depth[num_layers]

    def attn_units(self, width: float, layer: int) -> tuple[int, ...]:
        """Kept attention-unit indices of ``layer`` at ``width`` (KV groups or query heads, see ``attn_unit``)."""
        if width == 1.0:
            n = self.model.num_kv_heads if self.attn_unit == "kv_group" else self.model.num_heads
            return tuple(range(n))
        try:
            return self.attn[format_width(width)][layer]
        except KeyError:
            raise StrategyError(f"strategy has no attention width {format_width(width)}") from None

    def attn_heads(self, width: float, layer: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(kept query-head indices, kept KV-head indices) of ``layer`` at attention ``width``."""
        from core.strategy.units import heads_of_units

        return heads_of_units(self.attn_units(width, layer), self.model, self.attn_unit)

    def attn_groups(self, width: float, layer: int) -> tuple[int, ...]:
        """Kept KV-group indices of ``layer`` at attention ``width`` (all of them for ``q_head`` units)."""
        return self.attn_heads(width, layer)[1]

    def ffn_channels(self, width: float, layer: int) -> tuple[int, ...]:
        """Kept MLP channel indices of ``layer`` at MLP ``width``."""
        if width == 1.0:
            return tuple(range(self.model.intermediate_size))
        try:
            return self.ffn[format_width(width)][layer]
        except KeyError:
            raise StrategyError(f"strategy has no MLP width {format_width(width)}") from None

    @property
    def bias_modules(self) -> tuple[str, ...]:
        """The modules (of ``BIAS_MODULES``) that carry compensation biases; an export gives exactly these a bias."""
        return modules_of_bias_keys(self.biases)

    def bias(self, module: str, width: float, layer: int) -> torch.Tensor | None:
        """Compensation bias ``[hidden]`` for (module, width, layer), or ``None`` (width 1 / disabled)."""
        if width == 1.0:
            return None
        return self.biases.get(bias_key(module, width, layer))

    def check_model(self, info: ModelInfo, sha256: str | None = None) -> None:
        """Raise ``StrategyError`` if this strategy was made for another model."""
        if info != self.model:
            diffs = [k for k, v in info.to_dict().items() if self.model.to_dict().get(k) != v]
            raise StrategyError(f"strategy was made for another model (differs in: {', '.join(diffs)})")
        if sha256 is not None and sha256 != self.model_sha256:
            raise StrategyError(f"strategy was made for other weights (sha256 {self.model_sha256[:12]}…, model has {sha256[:12]}…)")

    # ---- (de)serialisation -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model.to_dict(),
            "model_sha256": self.model_sha256,
            "space": self.space.to_dict(),
            "keep_last": self.keep_last,
            "attn_unit": self.attn_unit,
            "allocation": self.allocation,
            "depth": {str(k): list(v) for k, v in sorted(self.depth.items())},
            "attn": {w: [list(x) for x in per_layer] for w, per_layer in self.attn.items()},
            "ffn": {w: [list(x) for x in per_layer] for w, per_layer in self.ffn.items()},
            "bias_keys": sorted(self.biases),
            "meta": self.meta,
        }

    def save(self, out_dir: Path) -> Path:
        """Write ``strategy.json`` + ``biases.safetensors`` atomically (``core.atomic``; an existing one is replaced)."""
        out_dir = Path(out_dir)
        with atomic_directory(out_dir) as tmp:
            (tmp / "strategy.json").write_text(json.dumps(self.to_json(), indent=1))
            save_file({k: v.detach().float().contiguous() for k, v in self.biases.items()}, str(tmp / "biases.safetensors"))
        return out_dir

    @classmethod
    def load(cls, path: Path) -> Strategy:
        """Read and validate a strategy directory; ``StrategyError`` names what is wrong."""
        path = Path(path)
        jf = path / "strategy.json"
        if not jf.is_file():
            raise StrategyError(f"{path} is not a strategy directory (no strategy.json)")
        try:
            d = json.loads(jf.read_text())
        except json.JSONDecodeError as e:
            raise StrategyError(f"{jf} is corrupt: {e}") from None
        if d.get("schema_version") != SCHEMA_VERSION:
            raise StrategyError(f"{jf}: schema_version {d.get('schema_version')!r} is not supported (expected {SCHEMA_VERSION})")
        try:
            biases = load_file(str(path / "biases.safetensors")) if d["bias_keys"] else {}
            missing = set(d["bias_keys"]) - set(biases)
            if missing:
                raise StrategyError(f"{path}: biases.safetensors lacks {sorted(missing)[:3]}")
            st = cls(
                model=ModelInfo(**d["model"]),
                model_sha256=d["model_sha256"],
                space=ShapeSpace(**d["space"]),
                keep_last=int(d["keep_last"]),
                allocation=d["allocation"],
                depth={int(k): tuple(v) for k, v in d["depth"].items()},
                attn={w: tuple(tuple(x) for x in v) for w, v in d["attn"].items()},
                ffn={w: tuple(tuple(x) for x in v) for w, v in d["ffn"].items()},
                biases=biases,
                meta=d.get("meta", {}),
                attn_unit=str(d.get("attn_unit", "kv_group")),
            )
        except StrategyError:
            raise
        except (KeyError, TypeError, ValueError, OSError, ConfigError) as e:
            raise StrategyError(f"{path}: corrupt strategy ({type(e).__name__}: {e})") from None
        st.validate()
        return st

    def validate(self) -> None:
        """Structural checks: every depth and width present, indices in range and sorted."""
        m = self.model
        for n in range(self.space.min_layers, self.space.max_layers + 1):
            layers = self.depth.get(n)
            if layers is None or len(layers) != n or list(layers) != sorted(set(layers)) or not all(0 <= i < m.num_layers for i in layers):
                raise StrategyError(f"strategy depth {n}: invalid kept-layer list {layers}")
        attn_units = m.num_kv_heads if self.attn_unit == "kv_group" else m.num_heads
        for table, name, units, ladder in ((self.attn, "attn", attn_units, self.space.attn_ladder), (self.ffn, "ffn", m.intermediate_size, self.space.widths)):
            for w in ladder[1:]:
                per_layer = table.get(format_width(w))
                if per_layer is None or len(per_layer) != m.num_layers:
                    raise StrategyError(f"strategy {name} width {format_width(w)}: missing or wrong number of layers")
                for i, idx in enumerate(per_layer):
                    if not idx or list(idx) != sorted(set(idx)) or idx[-1] >= units or idx[0] < 0:
                        raise StrategyError(f"strategy {name} width {format_width(w)} layer {i}: invalid indices")
                    if name == "attn" and self.attn_unit == "q_head":
                        try:
                            self.attn_heads(w, i)
                        except ConfigError as e:
                            raise StrategyError(f"strategy attn width {format_width(w)} layer {i}: {e}") from None


def naive_strategy(
    info: ModelInfo, model_sha256: str, min_layers: int, widths: tuple[float, ...], keep_last: int = 1,
    *, attn_widths: tuple[float, ...] | None = None, attn_unit: str = "kv_group",
) -> Strategy:
    """A data-free strategy: drop layers just below the last ``keep_last``; keep the first units. No biases.

    A reference and a test fixture, not a Stage 1 result.
    """
    from core.strategy.units import kept_attn_units

    space = ShapeSpace(info.num_layers, min_layers, widths, attn_widths)
    L = info.num_layers
    depth = {
        n: tuple(list(range(n - keep_last)) + list(range(L - keep_last, L))) if n > keep_last else tuple(range(L - n, L)) for n in range(min_layers, L + 1)
    }
    gs = info.group_size

    def first_units(w: float) -> tuple[int, ...]:
        k = kept_attn_units(info, w, attn_unit)
        return tuple(range(k)) if attn_unit == "kv_group" else tuple(g * gs + j for g in range(info.num_kv_heads) for j in range(k))

    attn = {format_width(w): tuple(first_units(w) for _ in range(L)) for w in space.attn_ladder[1:]}
    ffn = {format_width(w): tuple(tuple(range(max(1, math.ceil(w * info.intermediate_size)))) for _ in range(L)) for w in space.widths[1:]}
    return Strategy(info, model_sha256, space, keep_last, "uniform", depth, attn, ffn, {}, {"method": "naive"}, attn_unit=attn_unit)
