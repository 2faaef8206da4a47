"""Where data lives. The data directory is configurable (argument or ``AMOEBA_DATA_DIR``)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO_ROOT / "models"
FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures"
#: the accuracy cache shared by ``amoeba accuracy`` and ``amoeba search`` (relative to the working directory)
ACCURACY_CACHE = Path("var/accuracy_cache.json")


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the shared data directory: ``explicit`` > ``$AMOEBA_DATA_DIR`` > ``<repo>/../shared/data``."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("AMOEBA_DATA_DIR")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data"


def has_shared_data(explicit: str | os.PathLike[str] | None = None) -> bool:
    """True when the shared data directory (corpus and eval sets) is present."""
    root = data_dir(explicit)
    return (root / "corpus" / "gutenberg").is_dir() and (root / "eval").is_dir()
