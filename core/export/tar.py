"""The tar sink: named files → one deterministic archive (sorted names, zero mtimes and owners, mode 0644),
streamed once into its final place through ``core.atomic`` while its sha256 is computed."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from core.atomic import atomic_open


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``out``."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out, self.sha, self.size = out, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self._out.write(b)
        self.sha.update(b)
        self.size += len(b)
        return len(b)

    def tell(self) -> int:
        return self.size


def write_tar(files: Mapping[str, bytes], dest: Path, arcname: str) -> tuple[str, int]:
    """Archive ``files`` (name → bytes) under ``arcname/`` at ``dest``; returns (sha256 of the archive, bytes)."""
    with atomic_open(dest) as fh:
        out = _Hashing(fh)
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for name in sorted(files):
                info = tarfile.TarInfo(f"{arcname}/{name}")
                info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
                tar.addfile(info, io.BytesIO(files[name]))
    return out.sha.hexdigest(), out.size
