"""What an evaluation runs (``EvalPlan``) and the task names it may name, torch-free.

``amoeba eval --help`` reads its defaults and the task list from here; ``core.eval.recipe`` runs a plan and
``core.eval.tasks`` holds each task's loader (both re-export what they used to define).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError

#: every multiple-choice task ``core.eval.tasks.TASKS`` loads, in its order (a test keeps the two equal)
TASK_NAMES = ("piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "boolq", "openbookqa", "mmlu", "mmlu_5shot")
WIKITEXT2 = "wikitext2"


def check_task_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` when every one is a task; else ``ConfigError`` listing the known ones."""
    unknown = [t for t in names if t not in TASK_NAMES]
    if unknown:
        raise ConfigError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASK_NAMES)}")
    return names


def parse_task_names(text: str) -> tuple[str, ...]:
    """``"piqa, arc_easy"`` → ``("piqa", "arc_easy")``; unknown names raise ``ConfigError`` listing the known ones."""
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not names:
        raise ConfigError("no task names given")
    return check_task_names(names)


@dataclass(frozen=True)
class EvalPlan:
    """What to evaluate. ``limit``/``seed``: per-task subset (``select_items``); ``window``: perplexity window
    (capped by the model context; default the context); ``max_windows``: first windows only."""

    ppl_files: tuple[Path, ...] = ()
    wikitext2: bool = False
    tasks: tuple[str, ...] = ()
    limit: int | None = None
    seed: int | None = None
    window: int | None = None
    max_windows: int | None = None
    batch_size: int = 4
    data_root: Path | None = None

    def __post_init__(self) -> None:
        if not (self.ppl_files or self.wikitext2 or self.tasks):
            raise ConfigError("nothing to evaluate: give perplexity files, WikiText-2 or tasks")
        check_task_names(self.tasks)
        for name, v, lo in (("limit", self.limit, 1), ("max_windows", self.max_windows, 1), ("window", self.window, 2), ("batch_size", self.batch_size, 1)):
            if v is not None and v < lo:
                raise ConfigError(f"{name} must be >= {lo}, got {v}")
        names = [p.name for p in self.ppl_files] + ([WIKITEXT2] if self.wikitext2 else [])
        if len(set(names)) != len(names):
            raise ConfigError(f"perplexity inputs must have distinct file names, got {names}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-native form (paths as text) for the report."""
        d = asdict(self)
        d["ppl_files"] = [str(p) for p in self.ppl_files]
        d["data_root"] = None if self.data_root is None else str(self.data_root)
        return d
