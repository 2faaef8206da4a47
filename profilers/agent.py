"""The profiling recipe: measure a list of shapes with one plugin and assemble the profile table."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.spec import ShapeSpace, SubnetSpec
from profilers.base import Profiler
from profilers.errors import ProfilerUnavailable
from profilers.facts import FactsRecorder
from profilers.predictor.features import attn_params, mlp_params
from profilers.source import ModelSource
from profilers.table import ProfileRow, ProfileTable
from profilers.workload import Workload

if TYPE_CHECKING:
    from profilers.adaptive import AdaptiveOptions, AdaptiveResult, Step

OnRow = Callable[[int, ProfileRow], None]
#: ``on_progress(done, total, shape_key)`` after every single measurement (shapes × rounds × passes)
OnProgress = Callable[[int, int, str], None]


def require_available(profiler: Profiler) -> None:
    reason = profiler.unavailable_reason()
    if reason is not None:
        raise ProfilerUnavailable(f"engine {profiler.name} unavailable: {reason}")


def run_profile(profiler: Profiler, source: ModelSource, shapes: list[SubnetSpec], workload: Workload, *,
                device_name: str | None = None, command: str = "", on_row: OnRow | None = None,
                on_progress: OnProgress | None = None) -> ProfileTable:
    """Measure every shape by the shared protocol (``profilers.protocol``) and return the table.

    ``on_progress`` after every measurement; ``on_row(i, row)`` for each finished row (rounds interleave the
    shapes, so rows finish together at the end).
    """
    from profilers.protocol import measure_shapes

    require_available(profiler)
    profiler.check_workload(workload)
    engine = profiler.engine_facts(workload)
    rec = FactsRecorder(device_name, profiler.settings.threads)
    rec.start()
    m = measure_shapes(profiler, source, shapes, workload, on_progress=on_progress)
    for i, row in enumerate(m.rows):
        if on_row:
            on_row(i, row)
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
    device = rec.finish().model_copy(update={"cpu_affinity": m.protocol.cpu_affinity})
    return ProfileTable(device=device, engine=engine, workload=workload.key, model=source.facts(), rows=m.rows,
                        created_at=now, command=command, protocol=m.protocol, noise_floor=m.noise_floor)


def relative_cost(source: ModelSource, spec: SubnetSpec) -> float:
    """Parameter count of ``spec`` relative to the full model (embeddings and head included)."""
    i, m = source.info, source.facts()
    d = source.dims(spec)
    const = 2 * i.vocab_size * i.hidden_size
    full = const + i.num_layers * (attn_params(m, i.num_kv_heads, i.num_heads) + mlp_params(m, i.intermediate_size))
    return (const + spec.num_layers * (attn_params(m, d.kv_groups, d.q_heads) + mlp_params(m, d.ffn_channels))) / full


@dataclass(frozen=True)
class DryRun:
    """What would be measured and how long it should take (from one quick timing of the largest shape)."""

    shapes: list[SubnetSpec]
    probe_shape: SubnetSpec
    probe_seconds: float
    estimated_seconds: float


def dry_run(profiler: Profiler, source: ModelSource, shapes: list[SubnetSpec], workload: Workload) -> DryRun:
    """Measure the costliest listed shape once (no warm-up, one repetition), then extrapolate:

    ``G = ttft + (gen_len - 1)·tpot`` of the probe, ``B = probe wall time - G`` (prepare / load / compile), and
    ``estimate = Σ_shapes cost(shape)/cost(probe) · (B + passes·rounds·(warmup + repetitions)·G)``, with ``cost`` the
    parameter count (``relative_cost``); the per-round re-open is counted in ``B``. Busy re-measurements are not included.
    """
    from dataclasses import replace

    require_available(profiler)
    profiler.check_workload(workload)
    probe = max(shapes, key=lambda s: relative_cost(source, s))
    quick = type(profiler)(replace(profiler.settings, warmup=0, repetitions=1, busy_retries=0, busy_policy="mark", rounds=1, passes=1))
    t0 = time.perf_counter()
    row = quick.measure(source, probe, workload)
    probe_s = time.perf_counter() - t0
    gen_s = (row.ttft_ms.median + (workload.gen_len - 1) * row.tpot_ms.median) / 1e3
    build_s = max(0.0, probe_s - gen_s)
    st = profiler.settings
    visits = st.passes * st.rounds
    p_cost = relative_cost(source, probe)
    est = sum(relative_cost(source, s) / p_cost * visits * (build_s + (st.warmup + st.repetitions) * gen_s) for s in shapes)
    return DryRun(list(shapes), probe, probe_s, est)


def run_adaptive_profile(profiler: Profiler, source: ModelSource, candidates: list[SubnetSpec], workload: Workload, opts: AdaptiveOptions, *,
                         device_name: str | None = None, command: str = "", on_step: Callable[[Step], None] | None = None,
                         on_progress: OnProgress | None = None) -> tuple[ProfileTable, AdaptiveResult]:
    """Adaptive profiling (``profilers.adaptive``) of ``candidates`` with the shared protocol per batch; the table
    holds the measured shapes, the protocol and the noise floor over all batches. The server's first-start profile:
    ``candidates`` = the checkpoint's shape space, ``opts.budget_s`` = the time it may spend."""
    from profilers.adaptive import adaptive_profile
    from profilers.protocol import measure_shapes, noise_floor

    require_available(profiler)
    profiler.check_workload(workload)
    engine = profiler.engine_facts(workload)
    rec = FactsRecorder(device_name, profiler.settings.threads)
    rec.start()
    t0 = time.perf_counter()
    res = adaptive_profile(lambda batch: measure_shapes(profiler, source, batch, workload, on_progress=on_progress), candidates,
                           lambda s: profiler.dims(source, s), source.facts(), workload, opts, on_step=on_step)
    samples = {k: v for m in res.measurements for k, v in m.samples.items()}
    first = res.measurements[0].protocol
    protocol = first.model_copy(update={"remeasured_rounds": sum(m.protocol.remeasured_rounds for m in res.measurements),
                                        "wall_s": round(time.perf_counter() - t0, 3),
                                        "order": f"adaptive: {len(res.measurements)} batches ({res.stop_reason}); "
                                                 "rotated by one shape per round within a batch"})
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
    device = rec.finish().model_copy(update={"cpu_affinity": first.cpu_affinity})
    table = ProfileTable(device=device, engine=engine, workload=workload.key, model=source.facts(), rows=res.rows, created_at=now,
                         command=command, protocol=protocol, noise_floor=noise_floor(samples, profiler.settings.passes))
    return table, res


def first_start_profile(profiler: Profiler, source: ModelSource, space: ShapeSpace, workload: Workload, *, budget_s: float,
                        max_shapes: int | None = None, device_name: str | None = None,
                        command: str = "amoeba serve (first-start profile, adaptive)", on_progress: OnProgress | None = None,
                        on_step: Callable[[Step], None] | None = None) -> ProfileTable:
    """The service's first-start profile: adaptive profiling of every shape of ``space`` within ``budget_s`` seconds
    and at most ``max_shapes`` shapes (target: held-out MAPE <= 5 % and >= 95 % within ±10 % on TTFT and TPOT).
    Returns the table to ingest.

    The initial design (10 shapes, or ``max_shapes`` if fewer) is always measured; ``budget_s`` decides whether more
    batches follow. At least 2 passes are measured (a profiler with ``passes=1`` is re-created with 2) so the table
    records its noise floor. ``ConfigError`` when ``space`` or ``max_shapes`` has fewer than 6 shapes (the predictor's minimum).
    """
    from dataclasses import replace

    from profilers.adaptive import AdaptiveOptions

    if profiler.settings.passes < 2:
        profiler = type(profiler)(replace(profiler.settings, passes=2))
    cands = [s for s in space]
    cap = min(len(cands), max_shapes or len(cands))
    opts = AdaptiveOptions(budget_s=budget_s, initial=min(10, cap), max_shapes=max_shapes)
    table, _ = run_adaptive_profile(profiler, source, cands, workload, opts, device_name=device_name, command=command,
                                    on_step=on_step, on_progress=on_progress)
    return table
