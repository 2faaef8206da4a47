"""Load a Llama-family HF causal LM from a local directory; anything else is refused clearly."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from core.errors import DataMissingError, UnsupportedModelError

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
#: architectures an exported subnet may use (DESIGN §4): Granite carries biases when heads do not divide hidden
EXPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "granite")


@dataclass(frozen=True)
class ModelInfo:
    """The dimensions of a supported model that shapes and strategies depend on."""

    model_type: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    qkv_bias: bool
    max_position_embeddings: int

    @property
    def group_size(self) -> int:
        """Query heads per KV group."""
        return self.num_heads // self.num_kv_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, config: PretrainedConfig, *, exported: bool = False) -> ModelInfo:
        """Validate ``config`` as a supported Llama-family config and extract its dimensions.

        ``exported=True`` accepts what our export writes (Granite, Llama with biases): such models can be
        profiled and evaluated, but not used as a base for Stage 1/2.
        """
        mt = str(getattr(config, "model_type", None))
        allowed = EXPORTED_MODEL_TYPES if exported else SUPPORTED_MODEL_TYPES
        if mt not in allowed:
            raise UnsupportedModelError(f"unsupported model type {mt!r}: Amoeba supports Llama-family causal LMs ({', '.join(allowed)})")
        if not exported and getattr(config, "mlp_bias", False):
            raise UnsupportedModelError("base models with MLP biases are not supported")
        if not exported and mt == "llama" and getattr(config, "attention_bias", False):
            raise UnsupportedModelError("Llama base models with attention biases are not supported")
        heads = int(config.num_attention_heads)
        kv = int(getattr(config, "num_key_value_heads", None) or heads)
        if heads % kv:
            raise UnsupportedModelError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        return cls(
            model_type=mt,
            num_layers=int(config.num_hidden_layers),
            hidden_size=int(config.hidden_size),
            num_heads=heads,
            num_kv_heads=kv,
            head_dim=head_dim,
            intermediate_size=int(config.intermediate_size),
            vocab_size=int(config.vocab_size),
            tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            qkv_bias=mt == "qwen2" or (exported and bool(getattr(config, "attention_bias", False))),
            max_position_embeddings=int(getattr(config, "max_position_embeddings", 2048)),
        )


def read_config(model_dir: Path) -> dict[str, Any]:
    """The raw ``config.json`` of a model directory (clear error when missing or corrupt)."""
    p = Path(model_dir)
    if not p.is_dir():
        raise DataMissingError(f"model directory not found: {p}")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise UnsupportedModelError(f"{p} is not a Hugging Face model directory (no config.json)")
    try:
        data: dict[str, Any] = json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise UnsupportedModelError(f"{cfg} is not valid JSON: {e}") from None
    return data


def weights_sha256(model_dir: Path) -> str:
    """sha256 over the model's safetensors files (sorted by name): identifies the exact base weights."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise UnsupportedModelError(f"{model_dir} has no *.safetensors weights")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def load_base_model(model_dir: Path, dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, ModelInfo]:
    """Load a supported base model with stock transformers (no remote code), in eval mode.

    Uses SDPA attention. Raises ``UnsupportedModelError`` for other architectures.
    """
    from transformers import AutoConfig

    read_config(model_dir)
    config = AutoConfig.from_pretrained(str(model_dir))
    info = ModelInfo.from_config(config)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype, attn_implementation="sdpa")
    model.eval()
    return model, info
