"""The ``amoeba`` command: mounts every verb of the ``cli`` package (each module's ``register(app)``).

Modules are imported here by name, so a renamed or broken one fails loudly. Command modules import only light
modules at import time (no torch): heavy imports live inside the command bodies, so ``--help`` answers fast.
"""

from __future__ import annotations

import typer

from cli import accuracy, calibrate, evaluate, export, finetune, gguf, pretrain, profile, search, serve

COMMAND_MODULES = (pretrain, calibrate, gguf, export, evaluate, finetune, accuracy, profile, search, serve)
HELP = "Amoeba: one fine-tuned LLM, any subnet shape, per device."


def build_app() -> typer.Typer:
    """A fresh ``amoeba`` app with every command mounted."""
    app = typer.Typer(no_args_is_help=True, add_completion=False, help=HELP)

    @app.callback()
    def _root() -> None:
        """Amoeba: one fine-tuned LLM, any subnet shape, per device."""

    for module in COMMAND_MODULES:
        module.register(app)
    return app


def main() -> None:
    """Entry point of the ``amoeba`` console script (and of ``python -m cli``)."""
    build_app()()
