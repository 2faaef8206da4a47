"""The evaluation recipe: perplexity files, WikiText-2 and multiple-choice tasks on one ``EvalTarget``."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.eval.multiple_choice import MultipleChoiceItem, TaskResult, evaluate_items
from core.eval.perplexity import PerplexityResult, context_window, perplexity_of_text, read_text_file
from core.eval.target import EvalTarget
from core.eval.tasks import TASKS, load_task, select_items
from core.eval.wikitext import wikitext2_test_text

StageProgress = Callable[[str, int, int], None]
"""``on_progress(stage, done, total)``; stage is ``ppl:<name>`` or ``task:<name>``."""

WIKITEXT2 = "wikitext2"


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
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ConfigError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
        for name, v, lo in (("limit", self.limit, 1), ("max_windows", self.max_windows, 1), ("window", self.window, 2), ("batch_size", self.batch_size, 1)):
            if v is not None and v < lo:
                raise ConfigError(f"{name} must be >= {lo}, got {v}")
        names = [p.name for p in self.ppl_files] + ([WIKITEXT2] if self.wikitext2 else [])
        if len(set(names)) != len(names):
            raise ConfigError(f"perplexity inputs must have distinct file names, got {names}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ppl_files"] = [str(p) for p in self.ppl_files]
        d["data_root"] = None if self.data_root is None else str(self.data_root)
        return d


@dataclass
class EvalReport:
    """Results keyed by input name (file name or ``wikitext2``) and task name, plus wall seconds per stage."""

    target: dict[str, Any]
    plan: dict[str, Any]
    perplexity: dict[str, PerplexityResult] = field(default_factory=dict)
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return finite_json({
            "target": self.target,
            "plan": self.plan,
            "perplexity": {k: v.to_dict() for k, v in self.perplexity.items()},
            "tasks": {k: v.to_dict() for k, v in self.tasks.items()},
            "seconds": self.seconds,
        })

    def save(self, path: Path) -> Path:
        """Write the JSON atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, allow_nan=False))
        tmp.replace(path)
        return path


def finite_json(x: Any) -> Any:
    """Non-finite floats (an infinite perplexity) become ``None`` so the JSON stays standard."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_json(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite_json(v) for v in x]
    return x


@dataclass
class EvalInputs:
    """Everything a plan reads from disk: perplexity texts by name and the selected items per task."""

    texts: dict[str, str]
    items: dict[str, list[MultipleChoiceItem]]


def load_inputs(plan: EvalPlan) -> EvalInputs:
    """Read and check every input of ``plan`` (cheap; done before any model is loaded)."""
    from core.data.paths import data_dir

    root = data_dir(plan.data_root)
    texts: dict[str, str] = {}
    for p in plan.ppl_files:
        texts[p.name] = read_text_file(p)
    if plan.wikitext2:
        texts[WIKITEXT2] = wikitext2_test_text(root / "wikitext2")
    items = {t: select_items(load_task(t, root), plan.limit, plan.seed) for t in plan.tasks}
    return EvalInputs(texts, items)


def run_eval(target: EvalTarget, plan: EvalPlan, inputs: EvalInputs | None = None, on_progress: StageProgress | None = None) -> EvalReport:
    """Run ``plan`` on ``target`` (``inputs`` from ``load_inputs(plan)``, loaded here when not given)."""
    inputs = inputs or load_inputs(plan)
    window = context_window(plan.window, target.max_positions)
    desc = dict(target.describe, shape=target.shape, max_positions=target.max_positions)
    report = EvalReport(target=desc, plan=plan.to_dict() | {"window_used": window})

    def cb(stage: str) -> Callable[[int, int], None] | None:
        return None if on_progress is None else (lambda done, total: on_progress(stage, done, total))

    for name, text in inputs.texts.items():
        t0 = time.perf_counter()
        report.perplexity[name] = perplexity_of_text(target.logits_fn, target.tokenizer, text, window, batch_size=plan.batch_size,
                                                     max_windows=plan.max_windows, on_progress=cb(f"ppl:{name}"))
        report.seconds[f"ppl:{name}"] = round(time.perf_counter() - t0, 3)
    for name, task_items in inputs.items.items():
        t0 = time.perf_counter()
        report.tasks[name] = evaluate_items(name, target.logits_fn, target.tokenizer, task_items, target.max_positions,
                                            batch_size=plan.batch_size, on_progress=cb(f"task:{name}"))
        report.seconds[f"task:{name}"] = round(time.perf_counter() - t0, 3)
    return report
