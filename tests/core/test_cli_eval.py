"""``amoeba eval`` end to end on a tiny random model and the committed fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from core.data.paths import FIXTURES_DIR
from core.eval.multiple_choice import evaluate_items
from core.eval.perplexity import perplexity_of_text
from core.eval.tasks import load_task
from core.eval.wikitext import wikitext2_test_text
from core.model.loader import ModelInfo, weights_sha256
from core.strategy.schema import naive_strategy
from tests.conftest import make_tiny
from tests.factories import run_cli

DATA = FIXTURES_DIR / "eval" / "data"
TOK = FIXTURES_DIR / "eval" / "tokenizer"




def run(*args: str | Path) -> tuple[int, str]:
    r = run_cli("eval", *args)
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = AutoTokenizer.from_pretrained(str(TOK))
    d = tmp_path_factory.mktemp("m") / "tiny"
    make_tiny(vocab=len(tok)).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def strategy_dir(model_dir: Path) -> Path:
    cfg = json.loads((model_dir / "config.json").read_text())
    from transformers import LlamaConfig

    info = ModelInfo.from_config(LlamaConfig(**cfg))
    st = naive_strategy(info, weights_sha256(model_dir), min_layers=2, widths=(1.0, 0.5))
    return st.save(model_dir.parent / "strategy")


def test_eval_writes_json_that_matches_the_library(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "res.json"
    text = tmp_path / "t.txt"
    text.write_text("The cat sat on the mat. " * 40)
    code, output = run("--model", model_dir, "--tasks", "piqa,winogrande,mmlu", "--wikitext2", "--ppl", text, "--window", "32",
                       "--data-dir", DATA, "--json-out", out)
    assert code == 0, output
    assert "acc_norm" in output and "wikitext2" in output
    res = json.loads(out.read_text())
    assert set(res["tasks"]) == {"piqa", "winogrande", "mmlu"} and set(res["perplexity"]) == {"wikitext2", "t.txt"}
    assert res["plan"]["window_used"] == 32 and res["target"]["max_positions"] == 128
    assert res["tasks"]["mmlu"]["macro_acc"] is not None and len(res["tasks"]["mmlu"]["subject_acc"]) == 2
    # the CLI reports exactly what the library computes
    from core.eval.target import open_hf_target

    tgt = open_hf_target(model_dir)
    with torch.no_grad():
        piqa = evaluate_items("piqa", tgt.logits_fn, tgt.tokenizer, load_task("piqa", DATA), 128)
        wiki = perplexity_of_text(tgt.logits_fn, tgt.tokenizer, wikitext2_test_text(DATA / "wikitext2"), 32)
    assert res["tasks"]["piqa"]["acc"] == piqa.acc and res["tasks"]["piqa"]["acc_norm"] == piqa.acc_norm
    assert res["perplexity"]["wikitext2"]["ppl"] == pytest.approx(wiki.ppl, rel=1e-6)
    assert res["perplexity"]["wikitext2"]["tokens_scored"] == wiki.tokens_scored


def test_elastic_full_shape_equals_plain_model_and_shapes_differ(model_dir: Path, strategy_dir: Path, tmp_path: Path) -> None:
    args = ("--tasks", "hellaswag,arc_easy", "--wikitext2", "--window", "32", "--data-dir", DATA)
    assert run("--model", model_dir, *args, "--json-out", tmp_path / "a.json")[0] == 0
    assert run("--model", model_dir, "--strategy", strategy_dir, *args, "--json-out", tmp_path / "b.json")[0] == 0
    code, output = run("--model", model_dir, "--strategy", strategy_dir, "--shape", "L2-a0.5-f0.5", *args, "--json-out", tmp_path / "c.json")
    assert code == 0, output
    a, b, c = (json.loads((tmp_path / f"{k}.json").read_text()) for k in "abc")
    assert b["target"]["shape"] == "L4-a1-f1" and c["target"]["shape"] == "L2-a0.5-f0.5"
    assert b["perplexity"]["wikitext2"]["ppl"] == pytest.approx(a["perplexity"]["wikitext2"]["ppl"], rel=1e-5)
    assert b["tasks"]["hellaswag"]["acc"] == a["tasks"]["hellaswag"]["acc"]
    assert c["perplexity"]["wikitext2"]["ppl"] != pytest.approx(a["perplexity"]["wikitext2"]["ppl"], rel=1e-3)


def test_limit_and_seed(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    code, output = run("--model", model_dir, "--tasks", "mmlu,boolq", "--limit", "2", "--seed", "3", "--data-dir", DATA, "--json-out", out)
    assert code == 0, output
    res = json.loads(out.read_text())
    assert res["tasks"]["mmlu"]["n"] == 2 and len(res["tasks"]["mmlu"]["subject_acc"]) == 2 and res["tasks"]["boolq"]["n"] == 2


@pytest.mark.parametrize("extra,needle", [
    (["--tasks", "piqa,nope"], "unknown task"),
    (["--shape", "L2-a0.5-f0.5", "--tasks", "piqa"], "needs --strategy"),
    ([], "nothing to evaluate"),
    (["--tasks", "piqa", "--limit", "0"], "limit must be >= 1"),
    (["--tasks", "piqa", "--seed", "1"], "--seed only"),
    (["--ppl", "/nonexistent/x.txt"], "not found"),
    (["--tasks", "piqa", "--shape", "garbage"], "bad shape key"),
])
def test_bad_input_is_one_line_exit_2(model_dir: Path, extra: list[str], needle: str) -> None:
    code, output = run("--model", model_dir, "--data-dir", DATA, *extra)
    flat = " ".join(line.strip() for line in output.splitlines())  # rich wraps long lines at the terminal width
    assert code == 2 and needle in flat and "Traceback" not in output
    assert output.startswith("error:") and output.count("error:") == 1


def test_bad_model_and_strategy_for_other_weights(model_dir: Path, strategy_dir: Path, tmp_path: Path) -> None:
    code, output = run("--model", tmp_path / "missing", "--tasks", "piqa", "--data-dir", DATA)
    assert code == 2 and "not found" in output
    other = tmp_path / "other"
    make_tiny(vocab=512, seed=5).save_pretrained(str(other))
    AutoTokenizer.from_pretrained(str(TOK)).save_pretrained(str(other))
    code, output = run("--model", other, "--strategy", strategy_dir, "--tasks", "piqa", "--data-dir", DATA)
    assert code == 2 and "other weights" in output
    code, output = run("--model", other, "--tasks", "piqa", "--data-dir", tmp_path)
    assert code == 2 and "not found" in output


@pytest.mark.data
def test_every_real_task_runs_with_a_small_limit(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "real.json"
    code, output = run("--model", model_dir, "--tasks", "piqa,hellaswag,winogrande,arc_easy,arc_challenge,boolq,openbookqa,mmlu,mmlu_5shot",
                       "--limit", "2", "--wikitext2", "--max-windows", "2", "--json-out", out)
    assert code == 0, output
    res = json.loads(out.read_text())
    assert all(r["n"] == 2 for r in res["tasks"].values()) and res["perplexity"]["wikitext2"]["windows"] == 2


def test_checkpoint_option_equals_model_plus_strategy(model_dir: Path, strategy_dir: Path, tmp_path: Path) -> None:
    """A base dir with ``strategy/`` opened via --checkpoint scores exactly like --model + --strategy."""
    import shutil

    ck = tmp_path / "ck"
    shutil.copytree(model_dir, ck)
    shutil.copytree(strategy_dir, ck / "strategy")
    args = ("--shape", "L2-a0.5-f0.5", "--wikitext2", "--window", "32", "--data-dir", DATA)
    assert run("--model", model_dir, "--strategy", strategy_dir, *args, "--json-out", tmp_path / "a.json")[0] == 0
    code, output = run("--checkpoint", ck, *args, "--json-out", tmp_path / "b.json")
    assert code == 0, output
    a, b = (json.loads((tmp_path / f"{k}.json").read_text()) for k in "ab")
    assert b["target"]["shape"] == "L2-a0.5-f0.5"
    assert b["perplexity"]["wikitext2"]["ppl"] == pytest.approx(a["perplexity"]["wikitext2"]["ppl"], rel=1e-6)
    code, output = run("--checkpoint", ck, "--model", model_dir, *args)
    assert code == 2 and "exactly one of --model or --checkpoint" in output
