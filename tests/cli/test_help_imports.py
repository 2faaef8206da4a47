"""``amoeba --help`` and every ``amoeba X --help`` import no torch (heavy imports live inside command bodies)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.data.paths import REPO_ROOT

HEAVY = ("torch", "transformers")


def imported(*args: str) -> set[str]:
    """Top-level modules ``python -X importtime -m cli ARGS`` imports (it must exit 0)."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "cli", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Usage" in r.stdout
    lines = [ln.split("|")[-1] for ln in r.stderr.splitlines() if ln.startswith("import time:")]
    return {ln.strip().split(".")[0] for ln in lines}


@pytest.mark.parametrize("args", [("--help",), ("finetune", "--help")], ids=["root", "finetune"])
def test_help_imports_no_torch(args: tuple[str, ...]) -> None:
    mods = imported(*args)
    assert "typer" in mods  # the parse really ran
    assert not {m for m in HEAVY if m in mods}, f"amoeba {' '.join(args)} imported {[m for m in HEAVY if m in mods]}"


def test_every_verb_help_imports_no_torch() -> None:
    """Every verb's --help in one process; then torch must still be absent from ``sys.modules``."""
    code = """
import sys
from typer.main import get_command
from typer.testing import CliRunner
from cli.app import build_app

app = build_app()
group = get_command(app)
paths = []
def walk(cmd, path):
    paths.append(path)
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            walk(sub, path + [name])
walk(group, [])
for path in paths:
    r = CliRunner().invoke(app, path + ["--help"])
    assert r.exit_code == 0, (path, r.output)
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print(len(paths), heavy)
assert not heavy, heavy
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert int(r.stdout.split()[0]) >= 15  # the root, every verb and the profile / db subcommands
