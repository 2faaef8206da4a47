"""Task loaders on committed fixtures (real file formats); the real files under @pytest.mark.data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.data.paths import FIXTURES_DIR, data_dir
from core.errors import ConfigError, DataMissingError
from core.eval.multiple_choice import MultipleChoiceItem
from core.eval.plan import TASK_NAMES
from core.eval.tasks import TASKS, load_task, parse_task_names, select_items

ROOT = FIXTURES_DIR / "eval" / "data"


def first_json(rel: str) -> dict:
    return json.loads((ROOT / rel).read_text(encoding="utf-8").splitlines()[0])


@pytest.mark.parametrize("name,count,k", [("piqa", 4, 2), ("hellaswag", 3, 4), ("winogrande", 4, 2), ("arc_easy", 4, 4), ("arc_challenge", 4, 4),
                                          ("boolq", 3, 2), ("openbookqa", 4, 4), ("mmlu", 6, 4), ("mmlu_5shot", 6, 4)])
def test_every_task_loads_its_fixture(name: str, count: int, k: int) -> None:
    items = load_task(name, ROOT)
    assert len(items) == count and all(it.num_choices == k for it in items)
    assert all(c.startswith(" ") for it in items for c in it.continuations)


def test_piqa_format_and_labels() -> None:
    row = first_json("eval/piqa/valid.jsonl")
    labels = (ROOT / "eval/piqa/valid-labels.lst").read_text().split()
    items = load_task("piqa", ROOT)
    assert items[0].contexts[0] == f"Question: {row['goal']}\nAnswer:"
    assert items[0].continuations == (" " + row["sol1"], " " + row["sol2"])
    assert [it.gold for it in items] == [int(x) for x in labels]


def test_hellaswag_six_line_items() -> None:
    item = load_task("hellaswag", ROOT)[0]
    assert item.contexts[0] == "Roof shingle removal: A man is sitting on a roof. he"
    assert item.gold == 3 and item.continuations[3] == " starts pulling up roofing on a roof."


def test_winogrande_partial_scoring() -> None:
    item = load_task("winogrande", ROOT)[0]
    assert item.contexts == ("Sarah was a much better surgeon than Maria so Sarah", "Sarah was a much better surgeon than Maria so Maria")
    assert item.continuations == (" always got the easier cases.",) * 2
    assert item.gold == 1


def test_gauntlet_prompts() -> None:
    arc = first_json("eval/llm_foundry_gauntlet/arc_easy.jsonl")
    item = load_task("arc_easy", ROOT)[0]
    assert item.contexts[0] == arc["query"] + "\nAnswer:" and item.gold == arc["gold"]
    assert load_task("boolq", ROOT)[0].contexts[0].endswith("?\nAnswer:")
    obqa = first_json("eval/llm_foundry_gauntlet/openbook_qa.jsonl")
    assert load_task("openbookqa", ROOT)[0].contexts[0] == obqa["query"]


@pytest.mark.parametrize("name,rel", [("mmlu", "eval/mmlu/zero_shot_mmlu_val.json"), ("mmlu_5shot", "eval/mmlu/reconstructed/five_shot_mmlu_val.json")])
def test_mmlu_scores_answer_letters(name: str, rel: str) -> None:
    row = first_json(rel)
    items = load_task(name, ROOT)
    assert items[0].contexts[0] == row["input"] and row["input"].endswith("Answer:")
    assert items[0].continuations == (" A", " B", " C", " D") and items[0].gold == "ABCD".index(row["output"])
    assert len({it.subject for it in items}) == 2


def test_task_names() -> None:
    assert parse_task_names(" piqa,arc_easy,piqa ") == ("piqa", "arc_easy")
    with pytest.raises(ConfigError, match="unknown task"):
        parse_task_names("piqa,nope")
    with pytest.raises(ConfigError):
        parse_task_names(" , ")
    with pytest.raises(ConfigError):
        load_task("nope", ROOT)


def test_missing_and_corrupt_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match="valid.jsonl|valid-labels"):
        load_task("piqa", tmp_path)
    shutil.copytree(ROOT / "eval", tmp_path / "eval")
    f = tmp_path / "eval/llm_foundry_gauntlet/arc_easy.jsonl"
    f.write_text(f.read_text() + "{not json\n")
    with pytest.raises(ConfigError, match="line 5"):
        load_task("arc_easy", tmp_path)
    (tmp_path / "eval/piqa/valid-labels.lst").write_text("0\n1\n")
    with pytest.raises(ConfigError, match="4 items but valid-labels.lst has 2"):
        load_task("piqa", tmp_path)
    w = tmp_path / "eval/winogrande/dev.jsonl"
    w.write_text(json.dumps({"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"}) + "\n")
    with pytest.raises(ConfigError, match="no '_'"):
        load_task("winogrande", tmp_path)
    g = tmp_path / "eval/llm_foundry_gauntlet/boolq.jsonl"
    g.write_text(json.dumps({"query": "q", "choices": ["no", "yes"], "gold": 5}) + "\n")
    with pytest.raises(ConfigError, match="line 1: gold index 5"):
        load_task("boolq", tmp_path)


def items_with_subjects() -> list[MultipleChoiceItem]:
    return [MultipleChoiceItem.with_choices(f"q{i}", ["a", "b"], 0, subject=s) for i, s in enumerate("aaaaaabbbc")]


def test_select_items_is_deterministic_and_stratified() -> None:
    items = items_with_subjects()
    assert select_items(items, 3) == items[:3]
    assert select_items(items, None) == items and select_items(items, 50) == items
    s1, s2 = select_items(items, 3, seed=7), select_items(items, 3, seed=7)
    assert s1 == s2 and {it.subject for it in s1} == {"a", "b", "c"}
    assert [items.index(it) for it in s1] == sorted(items.index(it) for it in s1)
    assert any(select_items(items, 4, seed=k) != s1 for k in range(5))
    with pytest.raises(ConfigError):
        select_items(items, 0)


@pytest.mark.data
@pytest.mark.parametrize("name,count", [("piqa", 1838), ("hellaswag", 10042), ("winogrande", 1267), ("arc_easy", 2376), ("arc_challenge", 1172),
                                        ("boolq", 3270), ("openbookqa", 500), ("mmlu", 1531), ("mmlu_5shot", 1531)])
def test_real_sets_load_completely(name: str, count: int) -> None:
    items = load_task(name, data_dir())
    assert len(items) == count
    if name.startswith("mmlu"):
        assert len({it.subject for it in items}) == 57


@pytest.mark.data
def test_real_winogrande_matches_the_gauntlet_partial_form() -> None:
    """Two independent copies agree: our partial-scoring split of the official file = llm-foundry's."""
    ours = load_task("winogrande", data_dir())
    gauntlet = [json.loads(line) for line in (data_dir() / "eval/llm_foundry_gauntlet/winogrande.jsonl").read_text().splitlines()]
    assert len(ours) == len(gauntlet)
    for it, g in zip(ours, gauntlet, strict=True):
        assert list(it.contexts) == g["context_options"] and it.continuations[0] == " " + g["continuation"] and it.gold == g["gold"]


def test_registry_paths_point_into_the_data_layout() -> None:
    for spec in TASKS.values():
        assert (ROOT / spec.path).is_file(), spec.path


def test_the_torch_free_task_names_are_the_loaders() -> None:
    """``core.eval.plan.TASK_NAMES`` (what ``EvalPlan`` and ``--help`` check against) lists every loader, in order."""
    assert tuple(TASKS) == TASK_NAMES
