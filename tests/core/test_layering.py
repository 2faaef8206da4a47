"""Dependencies point one way inside ``core``: ``strategy`` → ``elastic`` (never back), ``core`` never imports
``profilers`` / ``server``, and opening a checkpoint for inference imports nothing from ``core.finetune``."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports (top level, inside functions and under ``TYPE_CHECKING`` alike)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def imports_of(package: str) -> dict[str, set[str]]:
    return {p.relative_to(ROOT).as_posix(): imported_modules(p) for p in sorted((ROOT / package.replace(".", "/")).rglob("*.py"))}


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{f} imports {m}" for f, mods in imports_of(package).items() for m in sorted(mods) if m.startswith(forbidden)]


def test_the_import_walk_sees_both_directions() -> None:
    assert any(m.startswith("core.elastic") for mods in imports_of("core.strategy").values() for m in mods)


def test_elastic_never_imports_strategy() -> None:
    assert offenders("core.elastic", ("core.strategy",)) == []


@pytest.mark.parametrize("package,forbidden", [("core", ("profilers", "server", "cli")), ("profilers", ("server", "cli"))])
def test_towers_point_down(package: str, forbidden: tuple[str, ...]) -> None:
    assert offenders(package, forbidden) == []


def test_opening_a_checkpoint_for_inference_imports_no_training_code(tmp_path: Path) -> None:
    """A subprocess saves nothing, only opens a checkpoint directory and lists the ``core.finetune`` modules it loaded."""
    from tests.factories import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path)
    code = (
        "import json, sys\n"
        "from core.checkpoint import open_checkpoint\n"
        f"ck = open_checkpoint({str(ckpt)!r})\n"
        "ck.elastic.set_shape(ck.strategy.space.largest)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('core.finetune'))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []
