"""sha256 manifest of an exported directory; the manifest's own sha256 is the artifact id."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.atomic import sha256_file
from core.errors import AmoebaError, DataMissingError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


class ExportIntegrityError(AmoebaError):
    """An exported directory does not match its manifest (missing, extra or altered files)."""


def _files(root: Path) -> list[Path]:
    """Every file under ``root`` except the top-level manifest, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p != root / MANIFEST)


def build_manifest(files: Mapping[str, bytes]) -> dict[str, Any]:
    """Manifest data for the files of an export (name → bytes; a ``manifest.json`` among them is skipped)."""
    listed = {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in sorted(files.items()) if name != MANIFEST}
    return {"manifest_version": MANIFEST_VERSION, "files": listed}


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """Canonical bytes of a manifest (sorted keys), whose sha256 is the artifact id."""
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()


def artifact_id(root: Path) -> str:
    """sha256 of ``root/manifest.json`` (the artifact id)."""
    p = Path(root) / MANIFEST
    if not p.is_file():
        raise DataMissingError(f"{root} has no {MANIFEST}: not an exported subnet")
    return sha256_file(p)


def verify_export(root: Path) -> bool:
    """Recheck every file of an exported directory against its manifest.

    Returns ``True``; raises ``ExportIntegrityError`` naming the first missing, extra or altered file
    (``DataMissingError`` when the directory or manifest is absent).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataMissingError(f"export directory not found: {root}")
    artifact_id(root)
    try:
        listed = json.loads((root / MANIFEST).read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ExportIntegrityError(f"{root / MANIFEST} is corrupt: {e}") from None
    present = {p.relative_to(root).as_posix(): p for p in _files(root)}
    for name in sorted(set(listed) - set(present)):
        raise ExportIntegrityError(f"{root}: file {name} listed in the manifest is missing")
    for name in sorted(set(present) - set(listed)):
        raise ExportIntegrityError(f"{root}: file {name} is not in the manifest")
    for name, entry in sorted(listed.items()):
        if sha256_file(present[name]) != entry.get("sha256"):
            raise ExportIntegrityError(f"{root}: file {name} does not match its sha256 in the manifest")
    return True
