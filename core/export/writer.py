"""``export_subnet``: one shape of an ``ElasticModel`` → a standalone HF model directory (DESIGN §4).

Files: ``model.safetensors``, ``config.json``, ``generation_config.json`` (when the model has one), tokenizer
files (copied from ``tokenizer_dir``), ``amoeba_subnet.json`` (the card), ``amoeba_layers.json`` (per-layer
subnets only) and ``manifest.json`` (sha256 of every file; its own sha256 is the artifact id).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import PretrainedConfig

from core.atomic import sha256_file
from core.elastic.model import ElasticModel
from core.errors import ConfigError, DataMissingError, UnsupportedModelError
from core.export.arch import choose_architecture, effective_sliding_window, subnet_config
from core.export.atomic import atomic_directory, check_target
from core.export.card import build_card
from core.export.layers import LAYERS_FILE, build_model
from core.export.manifest import MANIFEST, build_manifest, manifest_bytes
from core.export.slicing import SubnetPlan, SubnetTensors, plan_subnet, subnet_tensors
from core.spec import SubnetSpec

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "amoeba_subnet.json"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt",
    "added_tokens.json", "chat_template.jinja", "chat_template.json",
)


@dataclass(frozen=True)
class ExportResult:
    """Where a subnet was written, its artifact id (sha256 of ``manifest.json``) and what it is."""

    path: Path
    sha256: str
    num_parameters: int
    architecture: str
    seconds: float
    spec: SubnetSpec


def tokenizer_files(tokenizer_dir: Path) -> list[Path]:
    """The tokenizer files present in ``tokenizer_dir`` (``DataMissingError`` if there are none)."""
    d = Path(tokenizer_dir)
    if not d.is_dir():
        raise DataMissingError(f"tokenizer directory not found: {d}")
    found = [d / n for n in TOKENIZER_FILES if (d / n).is_file()]
    if not found:
        raise DataMissingError(f"{d} holds no tokenizer files (looked for {', '.join(TOKENIZER_FILES[:4])}, ...)")
    return found


def layers_description(plan: SubnetPlan) -> list[dict[str, int]]:
    """Per-layer dims of a subnet (the content of ``amoeba_layers.json``)."""
    return [
        {"num_attention_heads": len(lp.q_heads), "num_key_value_heads": len(lp.kv_heads),
         "intermediate_size": len(lp.ffn_channels), "source_layer": lp.source}
        for lp in plan.layers
    ]


def subnet_hf_config(elastic: ElasticModel, plan: SubnetPlan, st: SubnetTensors, dtype: torch.dtype) -> tuple[PretrainedConfig, list[dict[str, int]] | None]:
    """Stock config of the subnet (per-layer maxima when layers differ) and the per-layer description if needed."""
    info = elastic.info
    layers = None if plan.uniform else layers_description(plan)
    heads = list(plan.q_head_counts)
    sw = effective_sliding_window(elastic.hf.config, info)
    arch = choose_architecture(info.hidden_size, heads, attn_bias=st.attn_bias, mlp_bias=st.mlp_bias, sliding_window=sw)
    cfg = subnet_config(
        elastic.hf.config, info, num_layers=len(plan.layers), kv_groups=max(plan.kv_group_counts), q_heads=max(plan.q_head_counts),
        ffn_channels=max(plan.ffn_channel_counts),
        attn_bias=st.attn_bias, mlp_bias=st.mlp_bias, architecture=arch, dtype=dtype,
    )
    return cfg, layers


def check_tensors(config: PretrainedConfig, layers: list[dict[str, int]] | None, tensors: dict[str, torch.Tensor]) -> None:
    """Every parameter the stock model expects is written with the right shape, and nothing else is.

    Raises ``UnsupportedModelError`` naming the first mismatch (this is what guarantees no bias is dropped).
    """
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(config, layers).state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        expected.pop("lm_head.weight", None)
    for k in sorted(set(expected) - set(tensors)):
        raise UnsupportedModelError(f"export would lack tensor {k} that {type(config).__name__} expects")
    for k in sorted(set(tensors) - set(expected)):
        raise UnsupportedModelError(f"export would drop tensor {k}: {type(config).__name__} has no slot for it")
    for k, shape in expected.items():
        if tuple(tensors[k].shape) != shape:
            raise UnsupportedModelError(f"tensor {k} has shape {tuple(tensors[k].shape)}, {type(config).__name__} expects {shape}")


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


def export_subnet(
    elastic: ElasticModel,
    spec: SubnetSpec | str,
    out_dir: Path,
    *,
    tokenizer_dir: Path | None = None,
    source: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    overwrite: bool = False,
) -> ExportResult:
    """Cut ``spec`` out of ``elastic`` (strategy slices, compensation biases, merged adapters) into ``out_dir``.

    Atomic: nothing appears at ``out_dir`` unless every file was written and fsynced. Adapters are merged in
    eval mode; the elastic model's active shape and train/eval mode are restored afterwards. ``source`` (checkpoint/base path and sha256) and ``metrics`` go
    into the card and must be JSON-serialisable.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    s = SubnetSpec.parse(spec) if isinstance(spec, str) else spec
    check_target(out_dir, overwrite)
    tok = tokenizer_files(tokenizer_dir) if tokenizer_dir is not None else []
    plan = plan_subnet(elastic.strategy, elastic.info, s)
    previous, was_training = elastic.spec, elastic.training
    elastic.eval()  # deterministic adapters (no router noise)
    elastic.set_shape(plan.spec)
    try:
        st = subnet_tensors(elastic, plan, dtype)
    finally:
        elastic.set_shape(previous)
        elastic.train(was_training)
    config, layers = subnet_hf_config(elastic, plan, st, dtype)
    check_tensors(config, layers, st.tensors)
    card = build_card(elastic, plan, st, config, source=source, metrics=metrics, dtype=dtype)
    try:
        card_text = json.dumps(card, indent=1) + "\n"
    except (TypeError, ValueError) as e:
        raise ConfigError(f"source/metrics for the card must be JSON-serialisable: {e}") from None
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        save_file(st.tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        config.save_pretrained(str(tmp))
        gen = getattr(elastic.hf, "generation_config", None)
        if gen is not None:
            gen.save_pretrained(str(tmp))
        for f in tok:
            shutil.copyfile(f, tmp / f.name)
        if layers is not None:
            _write_json(tmp / LAYERS_FILE, {"layers": layers})
        (tmp / CARD_FILE).write_text(card_text)
        (tmp / MANIFEST).write_bytes(manifest_bytes(build_manifest(tmp)))
    return ExportResult(out_dir, sha256_file(out_dir / MANIFEST), st.num_parameters, (config.architectures or ["?"])[0], time.perf_counter() - t0, plan.spec)
