"""``amoeba search`` / ``amoeba search-worker`` on a tiny checkpoint with a synthetic profile table; bench/search.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from core.model.loader import ModelInfo
from core.search.cache import JsonAccuracyCache
from core.spec import ShapeSpace
from tests.factories import affine_table, run_cli, tiny_checkpoint, write_table

ACC = ("--window", "32", "--max-windows", "2")


def _run(*args: str | Path) -> tuple[int, str, str]:
    res = run_cli(*args)
    return res.exit_code, res.stdout, res.output


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from core.checkpoint import open_checkpoint

    root = tmp_path_factory.mktemp("search-cli")
    ckpt = tiny_checkpoint(root, name="tiny-ckpt", tokenizer=True, layers=4, min_layers=2)
    opened = open_checkpoint(ckpt)
    table = write_table(root / "table.json", affine_table(opened.elastic.info, opened.strategy.space))
    other = write_table(root / "ort.json", affine_table(opened.elastic.info, opened.strategy.space, engine="onnxruntime", scale=0.5))
    return {"ckpt": ckpt, "table": table, "other": other, "cache": root / "acc.json"}


def _search(env: dict[str, Path], *args: str | Path) -> tuple[int, str, str]:
    return _run("search", "--checkpoint", env["ckpt"], "--table", env["table"], "--accuracy-cache", env["cache"], *ACC, *args)


def test_exhaustive_answer_is_the_best_feasible_shape(env: dict[str, Path]) -> None:
    code, out, _ = _search(env, "--budget-ms", "3.0", "--json")
    assert code == 0, out
    doc = json.loads(out)
    ans = doc["answer"]
    assert ans["kind"] == "found" and ans["method"] == "exhaustive" and doc["accuracy_higher_is_better"] is True
    front = {r["shape"]: r for r in ans["front"]}
    assert ans["best"]["latency_ms"] <= 3.0 and ans["best"]["shape"] in front
    # every feasible shape was evaluated and cached; none beats the answer
    cache = JsonAccuracyCache(env["cache"])
    assert len(cache) == ans["evaluations"] > 0
    best = max(r.accuracy for r in cache.entries().values())
    assert ans["best"]["accuracy"] == best
    code, out, output = _search(env, "--budget-ms", "3.0")
    assert code == 0 and "best" in out and ans["best"]["shape"] in out and "0 accuracy evaluations" in output


def test_infeasible_names_the_fastest_latency(env: dict[str, Path]) -> None:
    code, out, output = _search(env, "--budget-ms", "0.5", "--json")
    assert code == 1
    ans = json.loads(out)["answer"]
    assert ans["kind"] == "infeasible" and ans["reason"] == "latency" and ans["fastest"]["shape"] == "L2-a0.5-f0.5"
    assert "below the fastest achievable" in output and f"{ans['fastest_latency_ms']:.3f}" in output


def test_memory_budget_and_other_metrics(env: dict[str, Path]) -> None:
    code, out, _ = _search(env, "--budget-ms", "40", "--metric", "e2e", "--memory-mb", "70", "--json")
    assert code == 0, out
    best = json.loads(out)["answer"]["best"]
    assert best["peak_mem_mb"] <= 70 and math.isclose(best["latency_ms"], best["ttft_ms"] + 7 * best["tpot_ms"], rel_tol=1e-9)


def test_table_selection(env: dict[str, Path]) -> None:
    args = ("--checkpoint", env["ckpt"], "--table", env["table"], "--table", env["other"], "--accuracy-cache", env["cache"], *ACC, "--budget-ms", "3")
    code, _, output = _run("search", *args)
    assert code == 2 and "2 profile tables match" in output and "dev1/onnxruntime/b1-p16-g8" in output
    code, out, _ = _run("search", *args, "--engine", "onnxruntime", "--json")
    assert code == 0 and json.loads(out)["engine"] == "onnxruntime"
    code, _, output = _run("search", *args, "--engine", "tensorrt_llm")
    assert code == 2 and "no profile table matches" in output


def test_table_of_another_model_is_refused(env: dict[str, Path], tmp_path: Path) -> None:
    from core.checkpoint import open_checkpoint

    opened = open_checkpoint(env["ckpt"])
    info = ModelInfo(**{**opened.elastic.info.to_dict(), "intermediate_size": 256})
    t = write_table(tmp_path / "big.json", affine_table(info, ShapeSpace(4, 2, (1.0, 0.5))))
    code, _, output = _run("search", "--checkpoint", env["ckpt"], "--table", t, "--accuracy-cache", env["cache"], *ACC, "--budget-ms", "3")
    assert code == 2 and "measured for another model" in output and "(intermediate_size 256 vs 128)" in output
    assert "ffn256" in output and "ffn128" in output  # both models named


@pytest.mark.parametrize(
    "args, message",
    [
        (["--metric", "latency"], "budget metric must be one of tpot, ttft, e2e"),
        (["--budget-ms", "-1"], "latency budget must be a positive number"),
        (["--method", "random"], "--method must be one of auto, exhaustive"),
        (["--groups", "3"], "3 layer groups need min_layers >= 3"),
    ],
)
def test_bad_input(env: dict[str, Path], args: list[str], message: str) -> None:
    code, _, output = _search(env, "--budget-ms", "3", *args)
    assert code == 2 and message in output and "Traceback" not in output


def test_workers_share_a_study(env: dict[str, Path], tmp_path: Path) -> None:
    code, _, output = _run("search-worker", "--checkpoint", env["ckpt"], "--table", env["table"], "--budget-ms", "3")
    assert code == 2 and "needs --storage URL and --study NAME" in output
    common = ("--checkpoint", env["ckpt"], "--table", env["table"], "--accuracy-cache", env["cache"], *ACC, "--budget-ms", "3",
              "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--study", "s1", "--trials", "6", "--json")
    code, out, _ = _run("search-worker", *common, "--seed", "1", "--groups", "2")
    assert code == 0, out
    code, out, _ = _run("search-worker", *common, "--seed", "2", "--groups", "2")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["answer"]["method"] == "optuna" and doc["answer"]["trials"] == 12 and doc["optuna"]["study_name"] == "s1"
    assert doc["answer"]["best"]["latency_ms"] <= 3.0
    code, _, output = _run("search-worker", *common, "--groups", "1")
    assert code == 2 and "created with another space" in output


def test_bench_on_tiny_inputs(env: dict[str, Path], tmp_path: Path) -> None:
    from bench.search import main

    out = tmp_path / "search.json"
    main(["--checkpoint", str(env["ckpt"]), "--table", str(env["table"]), "--budgets", "0.5,2.5,3.5", "--trials", "12",
          "--window", "32", "--max-windows", "2", "--groups", "0", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert [q["budget_ms"] for q in doc["queries"]] == [0.5, 2.5, 3.5]
    assert doc["queries"][0]["exhaustive"]["kind"] == "infeasible"
    for q in doc["queries"][1:]:
        ex, op = q["exhaustive"], q["optuna"]
        assert ex["kind"] == op["kind"] == "found" and ex["latency_ms"] <= q["budget_ms"]
        assert q["optuna_matches_exhaustive"] == (op["shape"] == ex["shape"])
        assert op["evaluations_cold"] >= 1 and ex["evaluations_warm"] == 0
        assert op["time_s"]["cold"] > 0 and op["time_s"]["warm"] > 0
    assert doc["space"]["shapes"] == 12 and doc["fill"]["evaluations"] == 12


def test_multi_constraint_budget_and_objective(env: dict[str, Path]) -> None:
    code, out, _ = _search(env, "--budget-ms", "3.0", "--json")
    assert code == 0, out
    loose = json.loads(out)["answer"]["best"]
    ttft_cap, mem_cap = loose["ttft_ms"] * 0.8, loose["peak_mem_mb"] * 0.9
    code, out, _ = _search(env, "--budget-ms", "3.0", "--ttft-ms", str(ttft_cap), "--memory-mb", str(mem_cap), "--objective", "memory_latency", "--json")
    assert code == 0, out
    best = json.loads(out)["answer"]["best"]
    assert best["ttft_ms"] <= ttft_cap and best["peak_mem_mb"] <= mem_cap and best["accuracy"] <= loose["accuracy"]
    assert best["e2e_ms"] == pytest.approx(best["ttft_ms"] + 7 * best["tpot_ms"])  # b1-p16-g8: 8 generated tokens
    code, _, output = _search(env, "--budget-ms", "3.0", "--objective", "memory_latency")
    assert code == 2 and "needs a memory budget" in output
    code, _, output = _search(env, "--budget-ms", "3.0", "--ttft-ms", "0.01")
    assert code == 1 and "together with ttft_ms" in output
