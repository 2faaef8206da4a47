"""What a model-taking verb uses when no model is named: the checkpoint the service serves.

That is ``AMOEBA_CHECKPOINT`` when set, else the bundled one (``server.settings.default_checkpoint``). The
lookups import on use, so that ``amoeba --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINT_HELP = "default: the served checkpoint (AMOEBA_CHECKPOINT, else the bundled one)"


def accuracy_metric_help() -> str:
    """Help of an accuracy-metric option: the registered metric names and tasks (read without importing torch)."""
    from core.eval.plan import TASK_NAMES
    from core.search.registries import METRIC_FACTORIES

    return (f"Accuracy metric, one of {', '.join(METRIC_FACTORIES.names())}: 'ppl' (perplexity on --calib-text; accuracy = -ln ppl) "
            f"or 'mc:<task>' with a task of {', '.join(TASK_NAMES)} (accuracy = a multiple-choice score, acc_norm by default).")


def served_checkpoint() -> Path:
    """The checkpoint ``amoeba serve`` would load (a checkpoint, or a base model directory with ``strategy/``)."""
    from server.settings import Settings

    return Settings().checkpoint_path()


def checkpoint_or_served(checkpoint: Path | None) -> Path:
    """``checkpoint`` when given, else the served one."""
    return checkpoint if checkpoint is not None else served_checkpoint()


def base_of(checkpoint: Path) -> Path:
    """The base model directory of a checkpoint (itself for a base model with ``strategy/``)."""
    from server.bootstrap import base_model_dir

    return base_model_dir(checkpoint)


def ppl_windows(window: int | None, max_windows: int | None) -> dict[str, int | None]:
    """Perplexity windowing as the service scores accuracy (``AMOEBA_CALIB_WINDOW`` / ``AMOEBA_CALIB_MAX_WINDOWS``)
    unless given; ``max_windows=0`` means the whole text."""
    from server.settings import Settings

    svc = Settings()
    return {"window": svc.calib_window if window is None else window,
            "max_windows": svc.calib_max_windows if max_windows is None else (max_windows or None)}
