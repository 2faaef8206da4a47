"""Profiler plugins; each imports its runtime lazily (see ``profilers.registry``)."""
