"""Each CLI default lives once, in its typed config: the generated options carry the config's defaults (so
``--help`` shows them), and help lists read their registries' ``names()`` without importing torch."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from typer.main import get_command

from core.data.paths import REPO_ROOT
from core.eval.plan import TASK_NAMES, EvalPlan
from core.search.config import MetricSettings, OptunaConfig
from core.strategy.config import CalibrationConfig
from tests.factories import cli_app

CALIB = CalibrationConfig(min_layers=1)


def defaults(verb: str) -> dict[str, Any]:
    """``{option name: default}`` of ``amoeba VERB`` as Click sees it."""
    commands = getattr(get_command(cli_app()), "commands")  # noqa: B009  (a group; typer may vendor its own click)
    return {p.name: p.default for p in commands[verb].params if p.name}


@pytest.mark.parametrize("verb, expected", [
    ("calibrate", {"keep_last": CALIB.keep_last, "allocation": CALIB.allocation, "window": CALIB.window, "max_tokens": CALIB.max_tokens,
                   "batch_size": CALIB.batch_size, "attn_unit": CALIB.attn_unit, "bias": ",".join(CALIB.bias_modules)}),
    ("eval", {"batch_size": EvalPlan.batch_size, "wikitext2": EvalPlan.wikitext2, "limit": None, "data_dir": None}),
    ("search", {"trials": OptunaConfig.n_trials, "seed": OptunaConfig.seed, "batch_size": MetricSettings.batch_size}),
    ("search-worker", {"trials": OptunaConfig.n_trials, "seed": OptunaConfig.seed}),
    ("accuracy", {"batch_size": MetricSettings.batch_size, "mc_score": MetricSettings.mc_score}),
])
def test_options_default_to_their_config(verb: str, expected: dict[str, Any]) -> None:
    got = defaults(verb)
    assert {k: got[k] for k in expected} == expected


def test_calibration_reads_a_bounded_number_of_tokens_by_default() -> None:
    """One default for library and CLI: the bundled strategies' 16384 tokens, not the whole calibration split."""
    assert CALIB.max_tokens == 16384 and defaults("calibrate")["max_tokens"] == 16384


def test_help_lists_read_the_registries_without_torch() -> None:
    """A member registered before the app is built shows in the help lists; torch is still not imported."""
    code = """
import sys
from typer.testing import CliRunner
from core.search.registries import METRIC_FACTORIES, SEARCHERS
SEARCHERS.register("fake_searcher", "nowhere:Fake")
METRIC_FACTORIES.register("fake_metric", "nowhere:fake")
from cli.app import build_app
app = build_app()
for verb in ("search", "accuracy", "eval"):
    r = CliRunner().invoke(app, [verb, "--help"], env={"COLUMNS": "1000", "TERMINAL_WIDTH": "1000"})
    assert r.exit_code == 0, r.output
    print(verb, " ".join(r.output.replace("│", " ").split()))
assert "torch" not in sys.modules
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = {line.split(" ", 1)[0]: line for line in r.stdout.splitlines()}
    assert "fake_searcher" in out["search"] and "fake_metric" in out["search"] and "fake_metric" in out["accuracy"]
    assert "tpot, ttft, e2e" in out["search"]
    assert all(t in out["eval"] and t in out["accuracy"] for t in TASK_NAMES)


@pytest.mark.parametrize("module", ["core.strategy.config", "core.eval.plan", "core.search.config", "core.search.registries"])
def test_config_modules_import_no_torch(module: str) -> None:
    r = subprocess.run([sys.executable, "-c", f"import sys, {module}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
