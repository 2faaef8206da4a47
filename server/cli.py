"""The ``amoeba`` command: composition root that mounts the commands of core, profilers and server."""

from __future__ import annotations

import typer

from core.cli.pretrain import pretrain_cmd

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Amoeba: one fine-tuned LLM, any subnet shape, per device.")
app.command("pretrain")(pretrain_cmd)


@app.callback()
def _root() -> None:
    """Amoeba: one fine-tuned LLM, any subnet shape, per device."""


def main() -> None:
    """Entry point of the ``amoeba`` console script."""
    app()
