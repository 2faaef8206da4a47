"""``--config FILE`` (YAML / TOML) and options generated from config dataclasses: file < flags, clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
import typer
from typer.testing import CliRunner

from cli.config_file import with_config_file
from cli.options import build_config, config_fields, config_options
from core.finetune.config import FinetuneConfig
from tests.factories import flat, run_cli


@dataclass(frozen=True)
class Inner:
    rank: int = 8
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    steps: int = 300
    lr: float = 1e-3
    limit: float | None = None
    fast: bool = True
    names: tuple[str, ...] = ("x",)  # not a scalar: never an option


def toy_app(seen: dict[str, Any]) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @with_config_file
    @config_options(Outer, {"steps": "steps", "lr": "lr", "limit": "limit", "fast": "fast", "inner.rank": "rank", "inner.mode": "mode"},
                    rename={"inner.rank": "lora_rank"})
    def run(name: Annotated[str, typer.Option(help="a plain option")] = "n", config: dict[str, Any] | None = None) -> None:
        seen.update(config or {}, name=name, built=build_config(Outer, config or {}))

    return app


def invoke(tmp_path: Path, text: str, suffix: str, *args: str) -> tuple[int, str, dict[str, Any]]:
    f = tmp_path / f"c{suffix}"
    f.write_text(text)
    seen: dict[str, Any] = {}
    r = CliRunner().invoke(toy_app(seen), ["--config", str(f), *args])
    return r.exit_code, r.output, seen


def test_fields_flatten_nested_dataclasses_and_skip_non_scalars() -> None:
    paths = {f.path: f.default for f in config_fields(Outer)}
    assert paths == {"inner.rank": 8, "inner.mode": "a", "steps": 300, "lr": 1e-3, "limit": None, "fast": True}


def test_defaults_come_from_the_dataclass_and_the_file_and_flags_override(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    assert CliRunner().invoke(toy_app(seen), []).exit_code == 0
    assert seen["built"] == Outer()
    code, out, seen = invoke(tmp_path, "steps: 5\nlora-rank: 2\nfast: false\nname: file\n", ".yaml", "--steps", "7")
    assert code == 0, out
    assert seen["built"] == Outer(inner=Inner(rank=2), steps=7, fast=False) and seen["name"] == "file"
    code, out, seen = invoke(tmp_path, 'lr = 0.5\nmode = "b"\nlimit = 2.5\n', ".toml")
    assert code == 0, out
    assert seen["built"] == Outer(inner=Inner(mode="b"), lr=0.5, limit=2.5)


@pytest.mark.parametrize("text, suffix, needle", [
    ("stepz: 5\n", ".yaml", "unknown key 'stepz'"),
    ("steps = \"many\"\n", ".toml", "bad value for 'steps'"),
    ("- 1\n", ".yaml", "must hold a mapping"),
    ("steps = [\n", ".toml", "not valid TOML"),
    ("steps: 1\n", ".json", "ends in .yaml, .yml or .toml"),
])
def test_bad_files_are_usage_errors_naming_the_key(tmp_path: Path, text: str, suffix: str, needle: str) -> None:
    code, out, seen = invoke(tmp_path, text, suffix)
    assert code == 2 and needle in flat(out) and not seen


def test_finetune_options_are_the_dataclass_fields_with_its_defaults() -> None:
    r = run_cli("finetune", "--help")
    assert r.exit_code == 0
    text = flat(r.output)
    for opt, default in (("--max-steps", FinetuneConfig.max_steps), ("--experts", 5), ("--lr", FinetuneConfig.lr), ("--seq-len", FinetuneConfig.seq_len)):
        assert opt in text and f"[default: {default}]" in text


def test_finetune_config_file_errors_before_any_work(tmp_path: Path) -> None:
    f = tmp_path / "ft.yaml"
    f.write_text("max_steps: 3\nexperts: 2\nbogus: 1\n")
    r = run_cli("finetune", "--config", f, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "unknown key 'bogus'" in flat(r.output)
    f.write_text("mixture: moe\n")
    r = run_cli("finetune", "--config", f, "--out", tmp_path / "o", "--base", tmp_path, "--strategy", tmp_path)
    assert r.exit_code == 2 and "mixture must be" in r.output  # the dataclass validates values from the file


def test_a_path_field_is_an_option() -> None:
    """A ``Path`` field (``EvalPlan.data_root``) gets an option that parses to a ``Path``."""

    @dataclass(frozen=True)
    class WithPath:
        root: Path | None = None

    seen: dict[str, Any] = {}
    app = typer.Typer()

    @app.command()
    @config_options(WithPath, {"root": "a directory"})
    def run(config: dict[str, Any] | None = None) -> None:
        seen.update(built=build_config(WithPath, config or {}))

    r = CliRunner().invoke(app, ["--root", "some/dir"])
    assert r.exit_code == 0, r.output
    assert seen["built"] == WithPath(root=Path("some/dir"))
