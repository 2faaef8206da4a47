"""The loaded checkpoint, shared by searches, accuracy jobs and exports (one lock around the model)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from core.spec import ShapeSpace


class Runtime:
    """Lazily opens the checkpoint at ``path`` (``core.checkpoint.open_checkpoint``) on first use.

    The elastic model is stateful (``set_shape``), so every user holds ``lock`` while it uses the model.
    """

    def __init__(self, path: Path, torch_threads: int = 1) -> None:
        self.path = Path(path)
        self.torch_threads = torch_threads
        self.lock = threading.RLock()
        self._ckpt: Any = None

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

    @property
    def loaded(self) -> bool:
        return self._ckpt is not None

    @property
    def sha256(self) -> str:
        return str(self.checkpoint().checkpoint_sha256)

    @property
    def space(self) -> ShapeSpace:
        space: ShapeSpace = self.checkpoint().strategy.space
        return space
