"""``python -m cli``: the ``amoeba`` command."""

from cli.app import main

main()
