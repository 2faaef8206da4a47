"""Typer commands of ``core``. The ``amoeba`` entry point (``server.cli``) mounts them."""
