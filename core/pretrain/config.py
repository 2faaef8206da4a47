"""Typed configuration for the base-model pretraining recipe."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # transformers is imported on use: the config (and `amoeba pretrain --help`) stays torch-free
    from transformers import LlamaConfig


@dataclass(frozen=True)
class ModelDims:
    """Llama architecture dimensions (GQA when ``num_kv_heads < num_heads``)."""

    vocab_size: int = 8192
    hidden_size: int = 256
    num_layers: int = 12
    num_heads: int = 16
    num_kv_heads: int = 8
    intermediate_size: int = 768
    max_position_embeddings: int = 512
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True

    def to_hf_config(self, bos_token_id: int = 1, eos_token_id: int = 2) -> LlamaConfig:
        """The stock ``LlamaConfig`` for these dimensions."""
        from transformers import LlamaConfig

        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be divisible by num_kv_heads")
        return LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            max_position_embeddings=self.max_position_embeddings,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
            tie_word_embeddings=self.tie_word_embeddings,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            rms_norm_eps=1e-5,
            attention_bias=False,
            mlp_bias=False,
        )


@dataclass(frozen=True)
class PretrainConfig:
    """Everything the pretraining recipe needs; serialised into every checkpoint."""

    dims: ModelDims = ModelDims()
    seq_len: int = 512
    batch_size: int = 8
    max_steps: int = 900
    lr: float = 1.5e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 60
    weight_decay: float = 0.1
    beta2: float = 0.95
    grad_clip: float = 1.0
    checkpoint_every: int = 50
    eval_every: int = 200
    eval_batches: int = 8
    seed: int = 1234
    threads: int = 1
    max_minutes: float | None = None

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainConfig:
        d = dict(d)
        d["dims"] = ModelDims(**d["dims"])
        return cls(**d)
