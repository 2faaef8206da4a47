"""Multiple-choice task registry: one loader per set, in the prompt format of lm-eval-harness (or AmoebaLLM).

Paths are relative to the shared data root (``core.data.paths.data_dir()``); see its PROVENANCE.md. Formats:
- ``piqa``: ``eval/piqa/valid.jsonl`` + ``valid-labels.lst`` (official) → ``"Question: {goal}\\nAnswer:"``, choices sol1/sol2.
- ``hellaswag``: ``eval/hellaswag/hellaswag_val_full.txt.bz2``, 6 lines per item (context, gold, 4 endings), already
  preprocessed like lm-eval → context as is, continuation ``" " + ending``.
- ``winogrande``: ``eval/winogrande/dev.jsonl`` (official) → partial scoring as lm-eval: context ``sentence[:_] + option``,
  shared continuation ``" " + sentence[_+1:].strip()``.
- ``arc_easy``, ``arc_challenge``, ``boolq``, ``openbookqa``: ``eval/llm_foundry_gauntlet/*.jsonl`` ``{query, choices, gold}``;
  ARC and BoolQ get lm-eval's ``"\\nAnswer:"`` after the query, OpenBookQA's query is the question stem as is.
- ``mmlu`` / ``mmlu_5shot``: AmoebaLLM/QLoRA prompts ``{subject, input, output}`` (zero-shot val / reconstructed five-shot
  val); the choices are the answer letters scored as ``" A"`` … ``" D"`` after ``"Answer:"``. With one-token letters the
  prediction equals AmoebaLLM's (argmax of the four letter logits at the last prompt position).
"""

from __future__ import annotations

import bz2
import json
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError, DataMissingError
from core.eval.multiple_choice import MultipleChoiceItem
from core.eval.plan import parse_task_names as parse_task_names  # re-exported: its old home

Loader = Callable[[Path], list[MultipleChoiceItem]]


@dataclass(frozen=True)
class TaskSpec:
    """A task: its data file (relative to the data root), loader and split."""

    name: str
    path: str
    loader: Loader
    split: str


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DataMissingError(f"evaluation data not found: {path}")
    return path


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _need(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path} line {n}: not JSON ({e})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{path} line {n}: expected a JSON object")
            yield n, row


def _field(row: dict[str, Any], key: str) -> Any:
    if key not in row:
        raise ConfigError(f"missing key {key!r}")
    return row[key]


@contextmanager
def _at(path: Path, n: int) -> Iterator[None]:
    """Prefix any item error with its file and line."""
    try:
        yield
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"{path} line {n}: {e}") from None


def load_piqa(root: Path) -> list[MultipleChoiceItem]:
    path = root / "eval/piqa/valid.jsonl"
    labels = _need(path.with_name("valid-labels.lst")).read_text().split()
    rows = list(_jsonl(path))
    if len(rows) != len(labels):
        raise ConfigError(f"{path} has {len(rows)} items but valid-labels.lst has {len(labels)} labels")
    out = []
    for (n, r), label in zip(rows, labels, strict=True):
        with _at(path, n):
            context = f"Question: {_field(r, 'goal')}\nAnswer:"
            out.append(MultipleChoiceItem.with_choices(context, [_field(r, "sol1"), _field(r, "sol2")], int(label)))
    return out


def load_hellaswag(root: Path) -> list[MultipleChoiceItem]:
    path = _need(root / "eval/hellaswag/hellaswag_val_full.txt.bz2")
    lines = bz2.decompress(path.read_bytes()).decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise ConfigError(f"{path}: {len(lines)} lines is not a multiple of 6 (context, gold, 4 endings per item)")
    out = []
    for k in range(0, len(lines), 6):
        with _at(path, k + 2):
            out.append(MultipleChoiceItem.with_choices(lines[k], lines[k + 2 : k + 6], int(lines[k + 1])))
    return out


def load_winogrande(root: Path) -> list[MultipleChoiceItem]:
    path = root / "eval/winogrande/dev.jsonl"
    out = []
    for n, r in _jsonl(path):
        with _at(path, n):
            sentence = str(_field(r, "sentence"))
            if "_" not in sentence:
                raise ConfigError("sentence has no '_' blank")
            i = sentence.index("_")
            answer = str(_field(r, "answer"))
            if answer not in ("1", "2"):
                raise ConfigError(f"answer must be '1' or '2', got {answer!r}")
            options = [sentence[:i] + str(_field(r, "option1")), sentence[:i] + str(_field(r, "option2"))]
            out.append(MultipleChoiceItem.with_contexts(options, sentence[i + 1 :].strip(), int(answer) - 1))
    return out


def _gauntlet(file: str, suffix: str) -> Loader:
    def load(root: Path) -> list[MultipleChoiceItem]:
        path = root / "eval/llm_foundry_gauntlet" / file
        out = []
        for n, r in _jsonl(path):
            with _at(path, n):
                choices = [str(c) for c in _field(r, "choices")]
                out.append(MultipleChoiceItem.with_choices(str(_field(r, "query")) + suffix, choices, int(_field(r, "gold"))))
        return out

    return load


def _mmlu(file: str) -> Loader:
    def load(root: Path) -> list[MultipleChoiceItem]:
        path = root / "eval/mmlu" / file
        out = []
        for n, r in _jsonl(path):
            with _at(path, n):
                answer = str(_field(r, "output")).strip()
                if answer not in ("A", "B", "C", "D"):
                    raise ConfigError(f"output must be one of A-D, got {answer!r}")
                item = MultipleChoiceItem.with_choices(str(_field(r, "input")), list("ABCD"), "ABCD".index(answer), subject=str(_field(r, "subject")))
            out.append(item)
        return out

    return load


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec("piqa", "eval/piqa/valid.jsonl", load_piqa, "validation"),
        TaskSpec("hellaswag", "eval/hellaswag/hellaswag_val_full.txt.bz2", load_hellaswag, "validation"),
        TaskSpec("winogrande", "eval/winogrande/dev.jsonl", load_winogrande, "dev"),
        TaskSpec("arc_easy", "eval/llm_foundry_gauntlet/arc_easy.jsonl", _gauntlet("arc_easy.jsonl", "\nAnswer:"), "test"),
        TaskSpec("arc_challenge", "eval/llm_foundry_gauntlet/arc_challenge.jsonl", _gauntlet("arc_challenge.jsonl", "\nAnswer:"), "test"),
        TaskSpec("boolq", "eval/llm_foundry_gauntlet/boolq.jsonl", _gauntlet("boolq.jsonl", "\nAnswer:"), "validation"),
        TaskSpec("openbookqa", "eval/llm_foundry_gauntlet/openbook_qa.jsonl", _gauntlet("openbook_qa.jsonl", ""), "test"),
        TaskSpec("mmlu", "eval/mmlu/zero_shot_mmlu_val.json", _mmlu("zero_shot_mmlu_val.json"), "validation (zero-shot)"),
        TaskSpec("mmlu_5shot", "eval/mmlu/reconstructed/five_shot_mmlu_val.json", _mmlu("reconstructed/five_shot_mmlu_val.json"), "validation (five-shot)"),
    )
}


def load_task(name: str, data_root: Path) -> list[MultipleChoiceItem]:
    """All items of task ``name`` from ``data_root`` (the layout of the shared data directory)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name].loader(Path(data_root))


def select_items(items: list[MultipleChoiceItem], limit: int | None, seed: int | None = None) -> list[MultipleChoiceItem]:
    """A deterministic subset of at most ``limit`` items, in file order.

    ``seed=None``: the first ``limit`` items. With a seed: a random sample, stratified by subject when items carry
    one (subjects in sorted order take turns, each drawing from its own seeded shuffle), so a small MMLU sample
    covers every subject. The same (items, limit, seed) always gives the same subset.
    """
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    if seed is None:
        return list(items[:limit])
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for k, it in enumerate(items):
        groups.setdefault(it.subject, []).append(k)
    queues = []
    for subject in sorted(groups):
        idx = groups[subject]
        rng.shuffle(idx)
        queues.append(idx)
    chosen: list[int] = []
    while len(chosen) < limit:
        for q in queues:
            if q and len(chosen) < limit:
                chosen.append(q.pop())
    return [items[k] for k in sorted(chosen)]
