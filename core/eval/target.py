"""What gets evaluated: a logits function, its tokenizer and context length, and a description for the report.

``open_hf_target``: a plain HF model directory (base model or exported subnet, loaded with stock transformers).
``open_elastic_target``: a base model + Stage 1 strategy as an ``ElasticModel`` at one shape.
A Stage 2 checkpoint becomes one more opener that returns an ``EvalTarget`` with the checkpoint's elastic model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.errors import ConfigError, UnsupportedModelError
from core.eval.perplexity import LogitsFn


@dataclass
class EvalTarget:
    """A model ready to score: ``logits_fn`` ``[B, T]`` → ``[B, T, V]``, ``max_positions`` its context length."""

    logits_fn: LogitsFn
    tokenizer: Any
    max_positions: int
    shape: str | None = None
    describe: dict[str, Any] = field(default_factory=dict)


def load_tokenizer(tokenizer_dir: Path) -> Any:
    """``AutoTokenizer`` from a local directory; ``ConfigError`` naming the directory when there is none."""
    from transformers import AutoTokenizer

    d = Path(tokenizer_dir)
    if not any((d / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        raise ConfigError(f"no tokenizer in {d} (pass --tokenizer DIR)")
    return AutoTokenizer.from_pretrained(str(d))


class HFCausalLM:
    """A stock HF causal LM as a logits function ``[B, T]`` → ``[B, T, V]`` and as a ``PackedLM``."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, use_cache=False).logits  # type: ignore[no-any-return]

    def final_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Last hidden state (after the final norm) with a 4D additive mask ``[B, 1, T, T]`` and positions ``[B, T]``."""
        out = self.model.model(input_ids=input_ids, attention_mask=attention_mask.to(self.model.dtype), position_ids=position_ids, use_cache=False)
        return out.last_hidden_state  # type: ignore[no-any-return]

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head ``[..., H]`` → ``[..., V]``."""
        return self.model.lm_head(hidden)  # type: ignore[no-any-return]


def _max_positions(config: Any) -> int:
    return int(getattr(config, "max_position_embeddings", None) or 2048)


def open_hf_target(model_dir: Path, tokenizer_dir: Path | None = None, shape: str | None = None) -> EvalTarget:
    """A plain HF causal LM directory, fp32, eval mode. ``shape`` is only a label (e.g. an exported subnet's key)."""
    from transformers import AutoModelForCausalLM

    from core.model.loader import read_config

    read_config(model_dir)
    tok = load_tokenizer(tokenizer_dir or model_dir)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    except (OSError, ValueError, KeyError) as e:
        raise UnsupportedModelError(f"cannot load {model_dir} as a causal LM: {e}") from None
    model.eval()
    return EvalTarget(HFCausalLM(model), tok, _max_positions(model.config), shape, {"kind": "hf", "model": str(model_dir)})


def open_elastic_target(model_dir: Path, strategy_dir: Path, shape: str | None = None, tokenizer_dir: Path | None = None) -> EvalTarget:
    """Base model + strategy as an ``ElasticModel`` at ``shape`` (default: the full shape). The strategy must have
    been made for exactly these weights (sha256 checked)."""
    from core.elastic.model import ElasticModel
    from core.model.loader import load_base_model, weights_sha256
    from core.strategy.schema import Strategy

    strategy = Strategy.load(strategy_dir)
    model, info = load_base_model(model_dir)
    strategy.check_model(info, weights_sha256(model_dir))
    tok = load_tokenizer(tokenizer_dir or model_dir)
    elastic = ElasticModel(model, strategy)
    spec = elastic.set_shape(shape or strategy.space.largest)
    elastic.eval()
    desc = {"kind": "elastic", "model": str(model_dir), "strategy": str(strategy_dir)}
    return EvalTarget(elastic, tok, info.max_position_embeddings, spec.key, desc)


def open_target(model_dir: Path, strategy_dir: Path | None = None, shape: str | None = None, tokenizer_dir: Path | None = None) -> EvalTarget:
    """``open_elastic_target`` with a strategy; otherwise ``open_hf_target`` (where only the full shape exists)."""
    if strategy_dir is not None:
        return open_elastic_target(model_dir, strategy_dir, shape, tokenizer_dir)
    if shape is not None:
        from core.model.loader import read_config
        from core.spec import SubnetSpec

        cfg = read_config(model_dir)
        full = SubnetSpec(int(cfg.get("num_hidden_layers", 0)) or 1).key
        if SubnetSpec.parse(shape).key != full:
            raise ConfigError(f"--shape {shape} needs --strategy; a plain model directory only has its full shape {full}")
        shape = full
    return open_hf_target(model_dir, tokenizer_dir, shape)


def open_checkpoint_target(path: Path, shape: str | None = None, tokenizer_dir: Path | None = None) -> EvalTarget:
    """An AmoebaLLM checkpoint (adapters active) at ``shape`` (default: the largest shape)."""
    from core.checkpoint import open_checkpoint

    ck = open_checkpoint(path)
    tok = tokenizer_dir or ck.tokenizer_dir
    if tok is None:
        raise ConfigError(f"no tokenizer with the base model of {path} (pass --tokenizer DIR)")
    spec = ck.elastic.set_shape(shape or ck.strategy.space.largest)
    describe = {"kind": ck.kind, "checkpoint": str(path), "checkpoint_sha256": ck.checkpoint_sha256}
    return EvalTarget(ck.elastic, load_tokenizer(tok), ck.elastic.info.max_position_embeddings, spec.key, describe)
