"""Atomic directory publication: write into a hidden temp dir next to the target, fsync, rename into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import ConfigError


def check_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse a target that is a file, or a non-empty directory unless ``overwrite``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output path {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(f"output directory {out_dir} exists and is not empty (pass overwrite=True / --overwrite to replace it)")


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (and ``root`` itself)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            _fsync_path(Path(dirpath) / name)
        _fsync_path(Path(dirpath))


def _publish(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    check_target(out_dir, overwrite)
    old: Path | None = None
    if out_dir.is_dir():
        if any(out_dir.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            out_dir.rename(old / out_dir.name)
        else:
            out_dir.rmdir()
    tmp.rename(out_dir)
    _fsync_path(out_dir.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_directory(out_dir: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temp directory in ``out_dir``'s parent; on success publish it as ``out_dir``.

    On any error (or crash) ``out_dir`` is untouched: the temp dir is removed (or, after a hard crash, left as a
    hidden ``.<name>.tmp-*`` sibling). An existing non-empty ``out_dir`` is replaced only with ``overwrite``.
    """
    out_dir = Path(out_dir)
    check_target(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        fsync_tree(tmp)
        _publish(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
