"""The entry tables of the search plugin families, torch-free: CLI help reads ``names()`` without loading a plugin.

``SEARCHERS`` (how the best feasible shape is found, ``core.search.searchers``) and ``METRIC_FACTORIES`` (accuracy
metrics, ``core.search.metrics``); both modules re-export their registry from here. A member is imported on
``load(name)`` only, and checked then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.registry import Registry, subclass_of

if TYPE_CHECKING:
    from core.search.searchers import Searcher


SEARCHERS: Registry[type[Searcher]] = Registry("searcher", {
    "exhaustive": "core.search.searchers:ExhaustiveSearcher",
    "optuna": "core.search.searchers:TpeSearcher",
    "nsga2": "core.search.searchers:NsgaSearcher",
    "index": "core.search.searchers:IndexSearcher",
}, subclass_of("core.search.searchers:Searcher"))

METRIC_FACTORIES: Registry[Any] = Registry("accuracy metric", {
    "ppl": "core.search.metrics:ppl_metric",
    "mc": "core.search.metrics:mc_metric",
})
