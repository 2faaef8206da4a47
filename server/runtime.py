"""The loaded checkpoint, shared by searches, accuracy jobs and exports (one lock around the model)."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import DataMissingError
from core.search.pipeline import ModelFingerprint
from core.spec import ShapeSpace


@dataclass(frozen=True)
class ModelIdentity:
    """What the served checkpoint is, read from its files without loading weights: the base model's
    fingerprint (dims + config hash), the shape space of its strategy and the checkpoint's sha256."""

    fingerprint: ModelFingerprint
    space: ShapeSpace
    checkpoint_sha256: str
    path: Path


def read_identity(path: Path) -> ModelIdentity:
    """The identity of the checkpoint at ``path``; ``DataMissingError`` when it is missing or incomplete."""
    from core.checkpoint import checkpoint_sha256
    from core.model.loader import read_config
    from core.strategy.schema import Strategy
    from server.bootstrap import base_model_dir

    if not path.is_dir():
        raise DataMissingError(f"checkpoint not found: {path} (AMOEBA_CHECKPOINT)")
    base = base_model_dir(path)
    strategy = Strategy.load(path / "strategy")
    config_sha = hashlib.sha256(json.dumps(read_config(base), sort_keys=True).encode()).hexdigest()
    return ModelIdentity(ModelFingerprint.of(strategy.model, config_sha), strategy.space, checkpoint_sha256(path), path)


class Runtime:
    """Lazily opens the checkpoint at ``path`` (``core.checkpoint.open_checkpoint``) on first use.

    The elastic model is stateful (``set_shape``), so every user holds ``lock`` while it uses the model.
    ``identity()`` (fingerprint, space, sha256) is read from the files alone, so uploads and the answer index
    never wait for the model to load.
    """

    def __init__(self, path: Path, torch_threads: int = 1) -> None:
        self.path = Path(path)
        self.torch_threads = torch_threads
        self.lock = threading.RLock()
        self._ckpt: Any = None
        self._identity: ModelIdentity | None = None

    def checkpoint(self) -> Any:
        """The ``OpenedCheckpoint`` (fields: elastic, strategy, base_dir, tokenizer_dir, checkpoint_sha256, kind)."""
        if self._ckpt is not None:  # loaded once; reading it needs no lock (using the model does)
            return self._ckpt
        with self.lock:
            if self._ckpt is None:
                import torch

                from core.checkpoint import open_checkpoint

                torch.set_num_threads(self.torch_threads)
                self._ckpt = open_checkpoint(self.path)
            return self._ckpt

    def identity(self) -> ModelIdentity:
        """The checkpoint's identity (cached after the first read)."""
        if self._identity is None:
            self._identity = read_identity(self.path)
        return self._identity

    @property
    def loaded(self) -> bool:
        return self._ckpt is not None

    @property
    def sha256(self) -> str:
        return self.identity().checkpoint_sha256

    @property
    def space(self) -> ShapeSpace:
        return self.identity().space
