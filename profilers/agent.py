"""The profiling recipe: measure a list of shapes with one plugin and assemble the profile table."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.spec import SubnetSpec
from profilers.base import Profiler
from profilers.errors import ProfilerUnavailable
from profilers.facts import FactsRecorder
from profilers.predictor.features import attn_params, mlp_params
from profilers.source import ModelSource
from profilers.table import ProfileRow, ProfileTable
from profilers.workload import Workload

OnRow = Callable[[int, ProfileRow], None]


def require_available(profiler: Profiler) -> None:
    reason = profiler.unavailable_reason()
    if reason is not None:
        raise ProfilerUnavailable(f"engine {profiler.name} unavailable: {reason}")


def run_profile(profiler: Profiler, source: ModelSource, shapes: list[SubnetSpec], workload: Workload, *,
                device_name: str | None = None, command: str = "", on_row: OnRow | None = None) -> ProfileTable:
    """Measure every shape (in order) and return the table; ``on_row(i, row)`` after each shape."""
    require_available(profiler)
    profiler.check_workload(workload)
    engine = profiler.engine_facts(workload)
    rec = FactsRecorder(device_name, profiler.settings.threads)
    rec.start()
    rows = []
    for i, spec in enumerate(shapes):
        row = profiler.measure(source, spec, workload)
        rows.append(row)
        if on_row:
            on_row(i, row)
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
    return ProfileTable(device=rec.finish(), engine=engine, workload=workload.key, model=source.facts(), rows=rows,
                        created_at=now, command=command)


def relative_cost(source: ModelSource, spec: SubnetSpec) -> float:
    """Parameter count of ``spec`` relative to the full model (embeddings and head included)."""
    i, m = source.info, source.facts()
    kv, ffn = source.kept(spec)
    const = 2 * i.vocab_size * i.hidden_size
    full = const + i.num_layers * (attn_params(m, i.num_kv_heads) + mlp_params(m, i.intermediate_size))
    return (const + spec.num_layers * (attn_params(m, kv) + mlp_params(m, ffn))) / full


@dataclass(frozen=True)
class DryRun:
    """What would be measured and how long it should take (from one quick timing of the largest shape)."""

    shapes: list[SubnetSpec]
    probe_shape: SubnetSpec
    probe_seconds: float
    estimated_seconds: float


def dry_run(profiler: Profiler, source: ModelSource, shapes: list[SubnetSpec], workload: Workload) -> DryRun:
    """Measure the costliest listed shape once (no warm-up, one repetition), then extrapolate:

    ``G = ttft + (gen_len - 1)·tpot`` of the probe, ``B = probe wall time - G`` (build / load / compile), and
    ``estimate = Σ_shapes cost(shape)/cost(probe) · (B + (warmup + repetitions)·G)``, with ``cost`` the parameter
    count (``relative_cost``). Busy re-measurements are not included.
    """
    from dataclasses import replace

    require_available(profiler)
    profiler.check_workload(workload)
    probe = max(shapes, key=lambda s: relative_cost(source, s))
    quick = type(profiler)(replace(profiler.settings, warmup=0, repetitions=1, busy_retries=0, busy_policy="mark"))
    t0 = time.perf_counter()
    row = quick.measure(source, probe, workload)
    probe_s = time.perf_counter() - t0
    gen_s = (row.ttft_ms.median + (workload.gen_len - 1) * row.tpot_ms.median) / 1e3
    build_s = max(0.0, probe_s - gen_s)
    gens = profiler.settings.warmup + profiler.settings.repetitions
    p_cost = relative_cost(source, probe)
    est = sum(relative_cost(source, s) / p_cost * (build_s + gens * gen_s) for s in shapes)
    return DryRun(list(shapes), probe, probe_s, est)
