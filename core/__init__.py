"""Amoeba core: the ML engine (elastic model, Stage 1/2, export, evaluation, search logic).

Nothing here imports ``server`` or ``profilers``; importing this package has no side effects.
"""

__version__ = "0.1.0"
