"""``amoeba calibrate`` end to end on a tiny model saved with a tiny SentencePiece tokenizer."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from core.strategy.schema import Strategy
from tests.conftest import make_tiny
from tests.factories import run_cli


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny 4-layer Llama + 300-piece tokenizer + calibration.txt (a few thousand tokens)."""
    from transformers import AutoTokenizer

    from core.data.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("calib-cli")
    rng = random.Random(0)
    syl = ["ka", "to", "mi", "ra", "ne", "su", "lo", "pe", "di", "an", "or", "el"]
    words = ["".join(rng.choice(syl) for _ in range(rng.randint(1, 3))) for _ in range(60)]
    text = "\n".join(" ".join(rng.choice(words) for _ in range(12)) + "." for _ in range(400)) + "\n"
    (root / "train.txt").write_text(text)
    tok_dir = train_tokenizer(root / "train.txt", root / "tok", vocab_size=300)
    d = root / "model"
    make_tiny("llama", layers=4, vocab=300).save_pretrained(str(d))
    AutoTokenizer.from_pretrained(str(tok_dir)).save_pretrained(str(d))
    (d / "calibration.txt").write_text(text[: len(text) // 2])
    return d


def _run(*args: str | Path) -> tuple[int, str]:
    res = run_cli("calibrate", *args)
    return res.exit_code, res.output


def test_calibrate_writes_a_strategy(model_dir: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in model_dir.iterdir())
    out = tmp_path / "strategy"
    code, output = _run("--model", model_dir, "--out", out, "--min-layers", "2", "--widths", "1,0.5", "--window", "32", "--max-tokens", "256")
    assert code == 0, output
    st = Strategy.load(out)
    assert st.space.min_layers == 2 and st.space.widths == (1.0, 0.5) and sorted(st.depth) == [2, 3, 4]
    assert st.meta["calib_sha256"] == hashlib.sha256((model_dir / "calibration.txt").read_bytes()).hexdigest()
    assert st.meta["tokens_used"] == 256 and st.meta["config"]["bias_modules"] == ["attn"]  # the measured default
    assert "perplexity by depth" in output and "saved strategy" in output
    assert sorted(p.name for p in model_dir.iterdir()) == before  # no token cache next to the model
    # rerun into the same directory with other options: replaced atomically, no temp left
    again: list[str | Path] = ["--calib-text", model_dir / "calibration.txt", "--widths", "1,0.75", "--allocation", "global", "--bias", "none"]
    code, output = _run("--model", model_dir, "--out", out, *again, "--window", "16", "--max-tokens", "128")
    assert code == 0, output
    st2 = Strategy.load(out)
    assert st2.allocation == "global" and st2.biases == {} and st2.space.min_layers == 2 and "0.75" in st2.attn
    assert not (tmp_path / "strategy.tmp").exists()


def _bad_arch_dir(tmp_path: Path) -> Path:
    d = tmp_path / "gpt2"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 50}))
    return d


@pytest.mark.parametrize(
    "case,msg",
    [
        ("missing-model", "model directory not found"),
        ("no-calib", "--calib-text"),
        ("missing-calib", "calibration text not found"),
        ("bad-arch", "unsupported model type 'gpt2'"),
        ("bad-widths", "bad width ladder"),
        ("min-layers", "min_layers must be in [1, 4]"),
        ("bad-bias", "bad bias modules"),
        ("out-is-model", "must not be the model directory"),
        ("out-not-strategy", "refusing to replace"),
    ],
)
def test_bad_input_is_one_line_exit_2(case: str, msg: str, model_dir: Path, tmp_path: Path) -> None:
    out, calib = tmp_path / "out", model_dir / "calibration.txt"
    args: list[str | Path] = {  # type: ignore[assignment]
        "missing-model": ["--model", tmp_path / "nope", "--out", out],
        "no-calib": ["--model", _bad_arch_dir(tmp_path), "--out", out],
        "missing-calib": ["--model", model_dir, "--out", out, "--calib-text", tmp_path / "none.txt"],
        "bad-arch": ["--model", _bad_arch_dir(tmp_path), "--out", out, "--calib-text", calib],
        "bad-widths": ["--model", model_dir, "--out", out, "--widths", "1,abc"],
        "min-layers": ["--model", model_dir, "--out", out, "--min-layers", "9"],
        "bad-bias": ["--model", model_dir, "--out", out, "--bias", "mlp"],
        "out-is-model": ["--model", model_dir, "--out", model_dir],
        "out-not-strategy": ["--model", model_dir, "--out", model_dir.parent],
    }[case]
    code, output = _run(*args)
    assert code == 2, output
    assert msg in " ".join(output.split()) and "Traceback" not in output
    assert not out.exists()


def test_max_tokens_zero_reads_the_whole_calibration_text(model_dir: Path, tmp_path: Path) -> None:
    """``--max-tokens`` defaults to the config's 16384; 0 lifts the limit (the config's ``None``)."""
    code, output = _run("--model", model_dir, "--out", tmp_path / "s", "--min-layers", "3", "--widths", "1", "--window", "32", "--max-tokens", "0")
    assert code == 0, output
    meta = Strategy.load(tmp_path / "s").meta
    assert meta["config"]["max_tokens"] is None and meta["tokens_used"] > 256 and meta["tokens_used"] % 32 == 0
