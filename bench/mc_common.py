"""Multiple choice for the Stage 2 benches: a fixed item set, per-item hits kept, paired differences.

Each evaluation keeps, per task, the acc_norm hit of every item as a ``"0101…"`` string, so two models scored on
the same items can be compared pairwise (the standard error of a difference is then far smaller than the two
accuracies' own: most items are answered alike).
"""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.errors import ConfigError  # noqa: E402

DEFAULT_TASKS = ("piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "boolq", "openbookqa")


@dataclass(frozen=True)
class MCSettings:
    """Which shapes get multiple choice, on which tasks, how many seeded items each."""

    shapes: tuple[str, ...] = ()
    tasks: tuple[str, ...] = DEFAULT_TASKS
    limit: int = 500
    seed: int = 0
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.limit < 1 or self.batch_size < 1:
            raise ConfigError(f"multiple choice needs --mc-limit >= 1 and a batch size >= 1, got {self.limit} and {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return {"shapes": list(self.shapes), "tasks": list(self.tasks), "limit": self.limit, "seed": self.seed, "batch_size": self.batch_size}


def load_items(settings: MCSettings, data_root: Path) -> dict[str, list[Any]]:
    """The seeded items of every task (``core.eval.tasks.select_items``)."""
    from core.eval.tasks import load_task, select_items

    return {t: select_items(load_task(t, data_root), settings.limit, settings.seed) for t in settings.tasks}


def mc_eval(model: Any, tokenizer: Any, items: dict[str, list[Any]], max_len: int, batch_size: int) -> dict[str, Any]:
    """acc_norm ± se per task with every item's hit, and the mean over tasks ± its standard error."""
    from core.eval.multiple_choice import score_items, summarize

    tasks = {}
    for t, its in items.items():
        scores = score_items(model, tokenizer, its, max_len, batch_size=batch_size)
        r = summarize(t, scores, its)
        tasks[t] = {"acc_norm": r.acc_norm, "acc_norm_stderr": r.acc_norm_stderr, "n": r.n, "chance": r.chance,
                    "hits_norm": "".join("1" if s.pred_norm == s.gold else "0" for s in scores)}
    ses = [v["acc_norm_stderr"] or 0.0 for v in tasks.values()]
    return {"tasks": tasks, "mean_acc_norm": statistics.fmean(v["acc_norm"] for v in tasks.values()),
            "mean_acc_norm_stderr": math.sqrt(sum(s * s for s in ses)) / len(ses)}


def paired_mc_diff(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float] | None:
    """Mean acc_norm difference ``a − b`` over the tasks and its standard error, paired item by item (``None``
    when the two were not scored on the same items)."""
    if set(a["tasks"]) != set(b["tasks"]):
        return None
    diffs, var = [], 0.0
    for t, ra in a["tasks"].items():
        ha, hb = ra.get("hits_norm", ""), b["tasks"][t].get("hits_norm", "")
        if len(ha) != len(hb) or len(ha) < 2:
            return None
        d = [int(x) - int(y) for x, y in zip(ha, hb, strict=True)]
        diffs.append(statistics.fmean(d))
        var += statistics.variance(d) / len(d)
    return statistics.fmean(diffs), math.sqrt(var) / len(diffs)
