"""The ``amoeba`` command: composition root that mounts the commands of core, profilers and server.

Each command module exposes ``register(app)``; modules are imported only here (no import side effects).
"""

from __future__ import annotations

import importlib
import importlib.util

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Amoeba: one fine-tuned LLM, any subnet shape, per device.")

COMMAND_MODULES = (
    "core.cli.pretrain",
    "core.cli.calibrate",
    "core.cli.gguf",
    "core.cli.export",
    "core.cli.evaluate",
    "core.cli.finetune",
    "core.cli.search",
    "profilers.cli",
    "server.cli_search",
    "server.commands",
)


@app.callback()
def _root() -> None:
    """Amoeba: one fine-tuned LLM, any subnet shape, per device."""


def build_app() -> typer.Typer:
    """Register every available command module on ``app`` (idempotent)."""
    if not getattr(app, "_amoeba_registered", False):
        for name in COMMAND_MODULES:
            if importlib.util.find_spec(name) is not None:
                importlib.import_module(name).register(app)
        app._amoeba_registered = True  # type: ignore[attr-defined]
    return app


def main() -> None:
    """Entry point of the ``amoeba`` console script."""
    build_app()()
