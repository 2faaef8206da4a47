"""The one atomic-write helper (stdlib only): readers see the old file / directory or the new one, never a part.

``atomic_path(final)`` yields a fresh temp path next to ``final``; the caller writes a file or a directory there;
on success it is fsynced and published (a file by ``os.replace``; a directory by renaming a previous one to
``<final>.old``, renaming the new one in and removing the old one; a crash in between leaves ``<final>.old``
intact), and the parent directory is fsynced. On any error the temp path is removed and ``final`` is untouched.
Everything else here (text, JSON, streams, directories) is written through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from core.errors import ConfigError


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync ``root`` (a file, or every file and directory under a directory)."""
    if not root.is_dir():
        _fsync(root)
        return
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            _fsync(Path(dirpath) / name)
        _fsync(Path(dirpath))


def _publish(tmp: Path, final: Path) -> None:
    if not tmp.is_dir():
        os.replace(tmp, final)
        return
    old = final.with_name(final.name + ".old")
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def check_target(final: str | os.PathLike[str], overwrite: bool, *, directory: bool = True) -> None:
    """Refuse a target of the wrong kind, or an existing one (a non-empty directory) unless ``overwrite``."""
    p = Path(final)
    if directory and p.exists() and not p.is_dir():
        raise ConfigError(f"output path {p} exists and is not a directory")
    if not directory and p.is_dir():
        raise ConfigError(f"output path {p} is a directory, a file is written there")
    if not overwrite and (p.is_file() or (p.is_dir() and any(p.iterdir()))):
        raise ConfigError(f"output {'directory ' if directory else ''}{p} exists{' and is not empty' if directory else ''} "
                          "(pass overwrite=True / --overwrite to replace it)")


@contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """A temp path next to ``final`` to write a file or a directory at; published as ``final`` on success."""
    p = Path(final)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        fsync_tree(tmp)
        _publish(tmp, p)
        _fsync(p.parent)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(final: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """A fresh empty directory published as ``final`` on success (an existing non-empty one only with ``overwrite``)."""
    check_target(final, overwrite)
    with atomic_path(final) as tmp:
        tmp.mkdir()
        yield tmp


@contextmanager
def atomic_open(final: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file handle whose file is published as ``final`` once the block ends without an error."""
    with atomic_path(final) as tmp, tmp.open("wb") as fh:
        yield fh


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], doc: Any) -> None:
    """``doc`` as indented JSON (no NaN/inf), written atomically."""
    atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, streamed in 4 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()

