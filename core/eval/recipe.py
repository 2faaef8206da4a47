"""The evaluation recipe: perplexity files, WikiText-2 and multiple-choice tasks on one ``EvalTarget``.

``EvalPlan`` lives in the torch-free ``core.eval.plan`` (imported here, so both paths work).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.eval.multiple_choice import MultipleChoiceItem, TaskResult, evaluate_items
from core.eval.perplexity import PerplexityResult, context_window, perplexity_of_text, read_text_file
from core.eval.plan import WIKITEXT2, EvalPlan
from core.eval.target import EvalTarget
from core.eval.tasks import load_task, select_items
from core.eval.wikitext import wikitext2_test_text

StageProgress = Callable[[str, int, int], None]
"""``on_progress(stage, done, total)``; stage is ``ppl:<name>`` or ``task:<name>``."""


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
        """Write the JSON atomically (``core.atomic``)."""
        from core.atomic import write_json

        write_json(path, self.to_json())
        return Path(path)


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
