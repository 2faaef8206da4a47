"""Search (DESIGN §6): accuracy table, budgets and queries, exhaustive and Optuna search, Pareto fronts.

Convention used everywhere in this package: **accuracy is higher-is-better**. For perplexity the accuracy is
``-ln(ppl)`` (= minus the mean next-token NLL in nats); the native value (ppl) is kept alongside as ``raw``.
Latency is lower-is-better, in milliseconds.
"""
