"""The ``amoeba`` command line: parses, calls core / profilers / server, prints. Composed in ``cli.app``."""
