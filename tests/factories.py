"""Shared test factories: build the objects many test files need in one place."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner, Result


@functools.cache
def cli_app() -> typer.Typer:
    """The real ``amoeba`` app (every verb mounted), built once per test session."""
    from cli.app import build_app

    return build_app()


def run_cli(*args: str | Path | float, **kwargs: Any) -> Result:
    """Invoke ``amoeba ARGS...`` in-process (arguments stringified); ``kwargs`` go to ``CliRunner.invoke``."""
    return CliRunner().invoke(cli_app(), [str(a) for a in args], **kwargs)


def flat(output: str) -> str:
    """CLI output as one line of single-spaced words, rich's box borders dropped (messages wrap at 80 columns)."""
    return " ".join(output.replace("│", " ").split())
