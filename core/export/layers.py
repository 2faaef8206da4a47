"""Per-layer subnets (``global`` width allocation): ``amoeba_layers.json`` and a loader built from stock classes.

A stock config holds one head count and one MLP size for all layers. A subnet whose layers differ is written
with a ``config.json`` holding the per-layer maxima (stock ``from_pretrained`` then refuses it with a size
mismatch instead of loading wrong weights) plus ``amoeba_layers.json``; ``load_exported`` rebuilds it from
the stock decoder-layer class, one config per layer.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from core.errors import DataMissingError, UnsupportedModelError
from core.export.manifest import verify_export

LAYERS_FILE = "amoeba_layers.json"
_LAYER_KEYS = ("num_attention_heads", "num_key_value_heads", "intermediate_size")


def layer_config(config: PretrainedConfig, layer: dict[str, Any]) -> PretrainedConfig:
    """``config`` with one layer's head counts and MLP size."""
    cfg = copy.deepcopy(config)
    for k in _LAYER_KEYS:
        setattr(cfg, k, int(layer[k]))
    return cfg


def build_model(config: PretrainedConfig, layers: list[dict[str, Any]] | None = None, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """A randomly initialised stock model for ``config``; with ``layers``, each decoder layer resized to its entry.

    Build under ``torch.device("meta")`` to get shapes only.
    """
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if layers is None:
        return model
    decoder = model.model.layers
    if len(layers) != len(decoder):
        raise UnsupportedModelError(f"{LAYERS_FILE} describes {len(layers)} layers, config has {len(decoder)}")
    for i, desc in enumerate(layers):
        try:
            decoder[i] = type(decoder[i])(layer_config(config, desc), layer_idx=i).to(model.dtype)
        except (KeyError, TypeError, ValueError) as e:
            raise UnsupportedModelError(f"{LAYERS_FILE} layer {i} is invalid: {e}") from None
    return model


def read_layers(export_dir: Path) -> list[dict[str, Any]] | None:
    """The per-layer description of an export, or ``None`` for a uniform (stock-loadable) one."""
    p = Path(export_dir) / LAYERS_FILE
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
        layers: list[dict[str, Any]] = data["layers"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise UnsupportedModelError(f"{p} is corrupt: {e}") from None
    return layers


def load_exported(export_dir: Path, *, dtype: torch.dtype = torch.float32, verify: bool = True) -> PreTrainedModel:
    """Load an exported subnet (uniform: stock ``from_pretrained``; per-layer: rebuilt from stock classes), eval mode.

    ``verify`` rechecks the sha256 manifest first.
    """
    from safetensors.torch import load_file

    d = Path(export_dir)
    if not d.is_dir():
        raise DataMissingError(f"export directory not found: {d}")
    if verify:
        verify_export(d)
    layers = read_layers(d)
    if layers is None:
        stock: PreTrainedModel = AutoModelForCausalLM.from_pretrained(str(d), dtype=dtype)
        return stock.eval()
    config = AutoConfig.from_pretrained(str(d))
    model = build_model(config, layers, dtype)
    state = load_file(str(d / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise UnsupportedModelError(f"{d}: weights do not match {LAYERS_FILE} (missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]})")
    if tied:
        model.tie_weights()
    return model.eval()
