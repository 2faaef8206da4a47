"""GGUF → stock Hugging Face directory (safetensors + config + tokenizer), through transformers' own GGUF loader.

``inspect_gguf`` reads the header with the ``gguf`` package and refuses what we cannot import (architecture,
tensor type) with one line naming it; ``import_gguf`` dequantises with ``from_pretrained(..., gguf_file=...)``
and publishes the directory atomically with an ``amoeba_import.json`` card (source file and its sha256).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.atomic import atomic_directory, sha256_file
from core.errors import ConfigError, DataMissingError, UnsupportedModelError

#: GGUF ``general.architecture`` values we import (the Llama family transformers' GGUF loader knows)
GGUF_ARCHITECTURES = ("llama", "mistral", "qwen2")
#: tensor types the ``gguf`` package dequantises and we accept (float, 8/5/4-bit legacy and k-quants)
GGUF_TENSOR_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K")
CARD_NAME = "amoeba_import.json"


@dataclass(frozen=True)
class GGUFSummary:
    """What the header of a GGUF file says: architecture, layer count and tensor types (name → count)."""

    path: str
    architecture: str
    num_layers: int
    tensor_types: dict[str, int]
    name: str | None


def _field_value(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    import gguf

    value = field.parts[field.data[0]]
    if field.types and field.types[0] == gguf.GGUFValueType.STRING:
        return bytes(value).decode("utf-8", errors="replace")
    return value.tolist()[0] if hasattr(value, "tolist") else value


def inspect_gguf(path: Path) -> GGUFSummary:
    """Read a GGUF header; ``UnsupportedModelError`` names an unsupported architecture or tensor type."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise DataMissingError(f"GGUF file not found: {path}")
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, KeyError) as e:
        raise UnsupportedModelError(f"{path} is not a readable GGUF file ({type(e).__name__}: {e})") from None
    arch = _field_value(reader, "general.architecture")
    if arch not in GGUF_ARCHITECTURES:
        raise UnsupportedModelError(f"{path.name}: GGUF architecture {arch!r} is not supported (supported: {', '.join(GGUF_ARCHITECTURES)})")
    types = Counter(t.tensor_type.name for t in reader.tensors)
    bad = sorted(set(types) - set(GGUF_TENSOR_TYPES))
    if bad:
        raise UnsupportedModelError(f"{path.name}: GGUF tensor type {', '.join(bad)} is not supported (supported: {', '.join(GGUF_TENSOR_TYPES)})")
    layers = _field_value(reader, f"{arch}.block_count")
    name = _field_value(reader, "general.name")
    return GGUFSummary(str(path), str(arch), int(layers or 0), dict(sorted(types.items())), name if isinstance(name, str) else None)


def import_gguf(path: Path, out: Path, *, dtype: str = "float32", extra_card: dict[str, Any] | None = None) -> Path:
    """Dequantise the GGUF ``path`` into a stock HF directory ``out`` (replaced atomically); returns ``out``.

    The model is loaded by ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)`` and the tokenizer by
    ``AutoTokenizer`` the same way, then saved with ``save_pretrained`` (safetensors) in ``dtype``.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    summary = inspect_gguf(path)
    path, out = Path(path).resolve(), Path(out)
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype)
    if torch_dtype is None:
        raise ConfigError(f"unknown dtype {dtype!r}: use float32, float16 or bfloat16")
    if out.exists() and not (out / CARD_NAME).is_file() and any(out.iterdir()):
        raise ConfigError(f"--out {out} exists and is not an imported model directory; refusing to replace it")
    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch_dtype)
    # transformers marks a GGUF-loaded model as quantised and refuses to save it: copy the dequantised
    # weights into a plain model of the same config (no quantization_config) and save that.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise UnsupportedModelError(
            f"{path.name}: GGUF tensors do not match the {config.model_type} layout (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    if config.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    del loaded
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    with atomic_directory(out) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        card = {
            "source_file": path.name,
            "source_sha256": sha256_file(path),
            "gguf": asdict(summary) | {"path": path.name},
            "dtype": dtype,
            "transformers_version": transformers.__version__,
            "model_type": model.config.model_type,
            "parameters": int(sum(p.numel() for p in model.parameters())),
        }
        card.update(extra_card or {})
        (tmp / CARD_NAME).write_text(json.dumps(card, indent=1) + "\n")
    return out
