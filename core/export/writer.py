"""Export sinks for one shape of an ``ElasticModel`` (DESIGN §4): an HF model directory (``export_subnet``) or a
deterministic tar of that directory (``export_subnet_tar``), each extracted once and published once.

Files: ``model.safetensors``, ``config.json``, ``generation_config.json`` (when the model has one), tokenizer
files (copied from ``tokenizer_dir``), ``amoeba_subnet.json`` (the card), ``amoeba_layers.json`` (per-layer
subnets only) and ``manifest.json`` (sha256 of every file; its own sha256 is the artifact id).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save

from core.atomic import atomic_directory, check_target
from core.elastic.model import ElasticModel
from core.errors import DataMissingError
from core.export.extract import Extracted, extract
from core.export.layers import LAYERS_FILE
from core.export.manifest import MANIFEST, build_manifest, manifest_bytes
from core.export.tar import write_tar
from core.spec import SubnetSpec

if TYPE_CHECKING:
    from core.export.gguf import GGUFWriteResult

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "amoeba_subnet.json"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt",
    "added_tokens.json", "chat_template.jinja", "chat_template.json",
)


@dataclass(frozen=True)
class ExportResult:
    """Where a subnet was written, its artifact id (sha256 of ``manifest.json``) and what it is; for a tar also the
    archive's own sha256 and size."""

    path: Path
    sha256: str
    num_parameters: int
    architecture: str
    seconds: float
    spec: SubnetSpec
    archive_sha256: str | None = None
    archive_bytes: int | None = None


def tokenizer_files(tokenizer_dir: Path) -> list[Path]:
    """The tokenizer files present in ``tokenizer_dir`` (``DataMissingError`` if there are none)."""
    d = Path(tokenizer_dir)
    if not d.is_dir():
        raise DataMissingError(f"tokenizer directory not found: {d}")
    found = [d / n for n in TOKENIZER_FILES if (d / n).is_file()]
    if not found:
        raise DataMissingError(f"{d} holds no tokenizer files (looked for {', '.join(TOKENIZER_FILES[:4])}, ...)")
    return found


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=1) + "\n").encode()


def subnet_files(ex: Extracted, tokenizer: list[Path]) -> dict[str, bytes]:
    """The files of an exported subnet directory, name → bytes, the manifest last."""
    cfg = ex.config
    if hasattr(cfg, "validate"):
        cfg.validate()
    files = {WEIGHTS_FILE: save(ex.subnet.state_dict, metadata={"format": "pt"}), "config.json": cfg.to_json_string(use_diff=True).encode()}
    if ex.generation_config is not None:
        files["generation_config.json"] = ex.generation_config.to_json_string(use_diff=True, keys_to_pop=["compile_config"]).encode()
    files.update({f.name: f.read_bytes() for f in tokenizer})
    if ex.layers is not None:
        files[LAYERS_FILE] = _json({"layers": ex.layers})
    files[CARD_FILE] = _json(ex.card)
    files[MANIFEST] = manifest_bytes(build_manifest(files))
    return files


def _result(path: Path, ex: Extracted, files: dict[str, bytes], t0: float, archive: tuple[str, int] | None = None) -> ExportResult:
    sha = hashlib.sha256(files[MANIFEST]).hexdigest()
    a_sha, a_bytes = archive if archive is not None else (None, None)
    return ExportResult(path, sha, ex.subnet.num_parameters, ex.architecture, time.perf_counter() - t0, ex.spec, a_sha, a_bytes)


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
    """Cut ``spec`` out of ``elastic`` into the HF model directory ``out_dir``.

    Atomic: nothing appears at ``out_dir`` unless every file was written and fsynced. Adapters are merged in
    eval mode; the elastic model's active shape and train/eval mode are restored afterwards. ``source``
    (checkpoint/base path and sha256) and ``metrics`` go into the card and must be JSON-serialisable.
    """
    t0 = time.perf_counter()
    check_target(out_dir, overwrite)
    tok = tokenizer_files(tokenizer_dir) if tokenizer_dir is not None else []
    return write_hf_dir(extract(elastic, spec, source=source, metrics=metrics, dtype=dtype), out_dir, tokenizer=tok, overwrite=overwrite, t0=t0)


def write_hf_dir(ex: Extracted, out_dir: Path, *, tokenizer: list[Path] | None = None, overwrite: bool = False, t0: float | None = None) -> ExportResult:
    """The HF directory sink: the files of ``ex`` (and the ``tokenizer`` files) published atomically at ``out_dir``."""
    t0 = time.perf_counter() if t0 is None else t0
    out_dir = Path(out_dir)
    files = subnet_files(ex, tokenizer or [])
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return _result(out_dir, ex, files, t0)


def export_subnet_tar(
    elastic: ElasticModel,
    spec: SubnetSpec | str,
    dest: Path,
    arcname: str,
    *,
    tokenizer_dir: Path | None = None,
    source: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> ExportResult:
    """The same files as ``export_subnet``, as a deterministic tar under ``arcname/`` at ``dest`` (one atomic write)."""
    t0 = time.perf_counter()
    tok = tokenizer_files(tokenizer_dir) if tokenizer_dir is not None else []
    files = subnet_files(ex := extract(elastic, spec, source=source, dtype=dtype), tok)
    return _result(Path(dest), ex, files, t0, write_tar(files, Path(dest), arcname))


def export_subnet_gguf(elastic: ElasticModel, spec: SubnetSpec | str, out: Path, *, gguf_dtype: str = "f16",
                       tokenizer_dir: Path | None = None, name: str | None = None) -> GGUFWriteResult:
    """``spec`` extracted (fp32) and written as one GGUF file at ``out`` (``write_gguf_file``)."""
    return write_gguf_file(extract(elastic, spec, dtype=torch.float32), out, gguf_dtype=gguf_dtype, tokenizer_dir=tokenizer_dir, name=name)


def write_gguf_file(ex: Extracted, out: Path, *, gguf_dtype: str = "f16", tokenizer_dir: Path | None = None, name: str | None = None) -> GGUFWriteResult:
    """The GGUF sink: the tensors of ``ex`` (extract in fp32) as one GGUF file at ``out``, published atomically."""
    from core.export.gguf import write_gguf_state

    return write_gguf_state(ex.config, ex.subnet.state_dict, out, dtype=gguf_dtype, tokenizer_dir=tokenizer_dir, name=name or f"amoeba-{ex.spec.key}")
