"""Where shapes come from: a base model directory (config-only: random weights per shape) or an exported subnet.

Config-only shapes follow export exactly: ``kept_heads`` (query and KV heads, for the model's attention unit:
whole KV groups or query heads inside every KV group) / ``kept_ffn_channels`` for the kept counts,
``subnet_config`` for the stock architecture, and compensation biases for widths below 1 (as exported).
An exported subnet directory has an ``amoeba_subnet.json`` card naming its ``shape``; its weights are loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError, UnsupportedModelError
from core.model.loader import ModelInfo, read_config
from core.spec import ShapeSpace, SubnetSpec
from core.strategy.schema import BIAS_MODULES, modules_of_bias_keys
from core.strategy.units import check_attn_unit, default_attn_ladder, kept_ffn_channels, kept_heads
from profilers.dims import ShapeDims
from profilers.table import ModelFacts

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel

CARD_NAME = "amoeba_subnet.json"


@dataclass(frozen=True)
class ModelSource:
    """A model directory to profile. ``exported_shape`` / ``exported_kept`` are set for an exported subnet (one shape).

    ``attn_unit``: what an attention width counts (``kv_group`` or ``q_head``, see ``core.strategy.units``);
    ``attn_widths``: the attention ladder of the model's strategy (``None``: the default for its unit count).
    """

    path: Path
    info: ModelInfo
    raw_config: dict[str, Any]
    exported_shape: SubnetSpec | None = None
    #: (query heads, KV heads, MLP channels) per layer of an exported subnet
    exported_kept: tuple[int, int, int] | None = None
    bias_modules: tuple[str, ...] = BIAS_MODULES
    attn_unit: str = "kv_group"
    attn_widths: tuple[float, ...] | None = None
    #: where config-only random weights are kept once built (``None``: rebuilt every time); shared by every flow
    weights_cache: Path | None = None

    @classmethod
    def open(cls, model_dir: Path, *, bias_modules: Sequence[str] | None = None, attn_unit: str | None = None) -> ModelSource:
        """Read ``config.json`` (and the subnet card if present); raises naming what is wrong.

        ``bias_modules``: which modules of a narrowed config-only shape get a compensation bias (``attn``, ``ffn``),
        as an export of the model's strategy would; ``None`` = those of ``<model_dir>/strategy`` when it exists,
        else both. ``attn_unit``: ``kv_group`` or ``q_head``; ``None`` = the unit of ``<model_dir>/strategy`` when it
        exists, else ``kv_group``.

        For an exported subnet, ``info`` is the *base* model of its card (``base_model``) so that widths and
        kept counts mean the same as for config-only shapes; per-layer (``global``) subnets are refused.
        """
        from transformers import AutoConfig

        d = Path(model_dir)
        raw = read_config(d)
        card = d / CARD_NAME
        # an exported subnet may be Granite or a biased Llama (DESIGN §4); a base model may not
        info = ModelInfo.from_config(AutoConfig.from_pretrained(str(d)), exported=card.is_file())
        if not card.is_file():
            unit, ladder = resolve_attn_unit(d, attn_unit)
            return cls(d, info, raw, None, None, resolve_bias_modules(d, bias_modules), unit, ladder)
        try:
            meta = json.loads(card.read_text())
            shape = SubnetSpec.parse(str(meta["shape"]))
            base = ModelInfo(**meta["base_model"]) if "base_model" in meta else info
        except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as e:
            raise UnsupportedModelError(f"{card} is not a valid subnet card (needs 'shape', optional 'base_model'): {e}") from None
        if meta.get("per_layer"):
            raise UnsupportedModelError(f"{d} is a per-layer (global allocation) subnet; profilers measure uniform subnets only")
        if shape.num_layers != info.num_layers:
            raise UnsupportedModelError(f"{card}: shape {shape.key} has {shape.num_layers} layers, config.json has {info.num_layers}")
        return cls(d, base, raw, shape, (info.num_heads, info.num_kv_heads, info.intermediate_size),
                   attn_unit=check_attn_unit(str((meta.get("strategy") or {}).get("attn_unit", attn_unit or "kv_group"))))

    @property
    def kind(self) -> str:
        return "config" if self.exported_shape is None else "exported"

    def facts(self) -> ModelFacts:
        i = self.info
        sha = hashlib.sha256(json.dumps(self.raw_config, sort_keys=True).encode()).hexdigest()
        return ModelFacts(model_type=i.model_type, num_layers=i.num_layers, hidden_size=i.hidden_size, num_heads=i.num_heads,
                          num_kv_heads=i.num_kv_heads, head_dim=i.head_dim, intermediate_size=i.intermediate_size,
                          vocab_size=i.vocab_size, source="config" if self.exported_shape is None else "exported", config_sha256=sha)

    def attn_ladder(self) -> tuple[float, ...]:
        """The attention ladder: the strategy's, else what the unit count allows (``default_attn_ladder``)."""
        return self.attn_widths if self.attn_widths is not None else default_attn_ladder(self.info, self.attn_unit)

    def space(self, min_layers: int, widths: tuple[float, ...] | None = None, attn_widths: tuple[float, ...] | None = None) -> ShapeSpace:
        """The shape space of this model: ``widths`` = MLP ladder, ``attn_widths`` (default ``attn_ladder()``) = attention
        ladder (an exported subnet has only its own shape)."""
        if self.exported_shape is not None:
            raise ConfigError(f"{self.path} is an exported subnet ({self.exported_shape.key}); it has no shape grid")
        attn = attn_widths if attn_widths is not None else self.attn_ladder()
        if widths:
            return ShapeSpace(self.info.num_layers, min_layers, widths, attn)
        return ShapeSpace(self.info.num_layers, min_layers, attn_widths=attn)

    def check(self, spec: SubnetSpec) -> None:
        """Raise ``ConfigError`` if ``spec`` cannot be built from this source."""
        if self.exported_shape is not None:
            if spec != self.exported_shape:
                raise ConfigError(f"{self.path} is the exported subnet {self.exported_shape.key}; cannot measure {spec.key}")
        elif spec.num_layers > self.info.num_layers:
            raise ConfigError(f"shape {spec.key}: {spec.num_layers} layers exceed the model's {self.info.num_layers}")

    def dims(self, spec: SubnetSpec) -> ShapeDims:
        """Depth, query heads, KV heads and MLP channels per layer of ``spec`` as actually built."""
        self.check(spec)
        if self.exported_kept is not None:
            q, kv, ffn = self.exported_kept
        else:
            q, kv = kept_heads(self.info, spec.attn_width, self.attn_unit)
            ffn = kept_ffn_channels(self.info, spec.ffn_width)
        return ShapeDims(spec.num_layers, kv, ffn, q)

    def kept(self, spec: SubnetSpec) -> tuple[int, int]:
        """(KV heads, MLP channels) per layer of ``spec`` as actually built (query heads: ``dims``)."""
        d = self.dims(spec)
        return d.kv_groups, d.ffn_channels

    def shape_config(self, spec: SubnetSpec) -> PretrainedConfig:
        """The stock HF config of ``spec`` (exported: the directory's own config)."""
        from transformers import AutoConfig

        from core.export.arch import subnet_config

        self.check(spec)
        base = AutoConfig.from_pretrained(str(self.path))
        if self.exported_shape is not None:
            return base
        d = self.dims(spec)
        attn_bias = "attn" in self.bias_modules and spec.attn_width < 1
        return subnet_config(base, self.info, num_layers=spec.num_layers, kv_groups=d.kv_groups, ffn_channels=d.ffn_channels,
                             q_heads=d.q_heads, attn_bias=self.info.qkv_bias or attn_bias,
                             mlp_bias="ffn" in self.bias_modules and spec.ffn_width < 1)

    def build_torch(self, spec: SubnetSpec, dtype: torch.dtype, seed: int = 0) -> PreTrainedModel:
        """``spec`` as an eval-mode torch model: random weights from its config, or the exported weights."""
        import torch
        from transformers import AutoModelForCausalLM

        if self.exported_shape is not None:
            self.check(spec)
            return AutoModelForCausalLM.from_pretrained(str(self.path), dtype=dtype, attn_implementation="sdpa").eval()
        cfg = self.shape_config(spec)
        cached = None
        if self.weights_cache is not None:
            key = hashlib.sha256(json.dumps([cfg.to_json_string(), str(dtype), seed]).encode()).hexdigest()[:24]
            cached = Path(self.weights_cache) / key
            if (cached / "config.json").is_file():
                return AutoModelForCausalLM.from_pretrained(str(cached), dtype=dtype, attn_implementation="sdpa").eval()
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=dtype).eval()
        if cached is not None:
            from core.atomic import atomic_directory

            with atomic_directory(cached) as tmp:
                model.save_pretrained(str(tmp))
        return model

    def write_shape_dir(self, spec: SubnetSpec, out: Path, *, weights: bool) -> Path:
        """Write ``spec`` as an HF directory (config, plus random safetensors when ``weights``) for engines that build from disk."""
        import torch

        if self.exported_shape is not None:
            self.check(spec)
            return self.path
        out.mkdir(parents=True, exist_ok=True)
        if weights:
            self.build_torch(spec, torch.float16).save_pretrained(str(out))
        else:
            self.shape_config(spec).save_pretrained(str(out))
        return out


def resolve_attn_unit(model_dir: Path, requested: str | None) -> tuple[str, tuple[float, ...] | None]:
    """(attention unit, attention ladder): ``requested`` (ladder ``None``), else those of ``<model_dir>/strategy``,
    else ``kv_group`` with no ladder (the default for the unit count applies)."""
    if requested is not None:
        return check_attn_unit(requested), None
    doc = Path(model_dir) / "strategy" / "strategy.json"
    if not doc.is_file():
        return "kv_group", None
    try:
        d = json.loads(doc.read_text())
        unit = check_attn_unit(str(d.get("attn_unit", "kv_group")))
        space = d["space"]
        ladder = space.get("attn_widths", space["widths"])
        return unit, ShapeSpace(int(space["max_layers"]), int(space["min_layers"]), space["widths"], ladder).attn_ladder
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, ConfigError) as e:
        raise UnsupportedModelError(f"{doc} is not a valid strategy file (needs 'space', optional 'attn_unit'): {e}") from None


def resolve_bias_modules(model_dir: Path, requested: Sequence[str] | None) -> tuple[str, ...]:
    """``requested`` checked against ``BIAS_MODULES``, or (``None``) the modules of ``<model_dir>/strategy``, else all."""
    if requested is not None:
        from core.strategy.config import parse_bias_modules

        return parse_bias_modules(requested)
    doc = Path(model_dir) / "strategy" / "strategy.json"
    if not doc.is_file():
        return BIAS_MODULES
    try:
        keys = json.loads(doc.read_text())["bias_keys"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise UnsupportedModelError(f"{doc} is not a valid strategy file (needs 'bias_keys'): {e}") from None
    return modules_of_bias_keys(keys)
