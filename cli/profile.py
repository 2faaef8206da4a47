"""``amoeba profile``: measure shapes on this device, save the table, upload it (``profile upload|fit|engines``:
``cli.profile_tools``).

With no ``--model`` it profiles the served checkpoint's base over that checkpoint's own shape space (its ladders,
depths, compensation biases and attention unit), as ``amoeba serve`` does on first start. The measurement options
come from ``MeasureSettings``; their defaults are ``MEASURE`` below.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cli import profile_tools
from cli.common import cli_errors, console, progress
from cli.config_file import with_config_file
from cli.options import build_config, config_options
from core.errors import ConfigError
from profilers.base import MeasureSettings
from profilers.registry import names as engine_names

#: ``amoeba profile``'s measurement defaults: more rounds and two passes (the test-retest noise floor) than the
#: library's quick default, which the first-start profile uses
MEASURE = MeasureSettings(repetitions=2, rounds=2, passes=2)
HELP = {
    "repetitions": "timed generations per shape per round",
    "warmup": "untimed generations per shape per round",
    "rounds": "interleaved rounds per pass (every shape once per round)",
    "passes": "separate passes (>= 2 records the test-retest noise floor)",
    "threads": "pinned compute threads",
    "busy_policy": "when other processes compete for the CPU: 'mark' rows or 'refuse'",
    "busy_retries": "re-measurements of a contended round before it is marked busy",
    "device": "cpu or cuda",
}
Opt = typer.Option


@cli_errors
@with_config_file
@config_options(MeasureSettings, HELP, rename={"busy_policy": "busy", "device": "device_kind"}, defaults=MEASURE)
def profile(
    ctx: typer.Context,
    engine: Annotated[Optional[str], Opt(help=f"profiler plugin: {', '.join(engine_names())} (default: the first-start profile's, "
                                              "AMOEBA_BOOTSTRAP_ENGINE)")] = None,
    workload: Annotated[str, Opt(help="workload key b{batch}-p{prompt}-g{gen}[-dtype]")] = "b1-p128-g64",
    shapes: Annotated[str, Opt(help="'grid' (the model's shape space), 'adaptive' (fit-guided subset of the grid within --budget-min) "
                                    "or a file of shape keys")] = "grid",
    model: Annotated[Optional[Path], Opt(help="base model dir (random weights per shape) or an exported subnet dir (default: the "
                                              "served checkpoint's base, over that checkpoint's shape space)")] = None,
    out: Annotated[Optional[Path], Opt(help="where to write the profile table (JSON)")] = None,
    min_layers: Annotated[Optional[int], Opt(help="grid: smallest depth (default: the checkpoint's with the default model, else 1)")] = None,
    depth_step: Annotated[int, Opt(help="grid: keep every n-th depth (L and --min-layers always kept)")] = 1,
    max_shapes: Annotated[Optional[int], Opt(help="thin the shape list evenly to at most this many")] = None,
    widths: Annotated[Optional[str], Opt(help="grid: MLP width ladder (default: the checkpoint's with the default model, else 1,7/8,3/4,5/8)")] = None,
    attn_widths: Annotated[Optional[str], Opt(help="grid: attention width ladder (default: the model's, from its strategy/ or its unit count)")] = None,
    attn_unit: Annotated[Optional[str], Opt(help="attention unit kv_group or q_head (default: the model's strategy/, else kv_group)")] = None,
    cpu_affinity: Annotated[Optional[str], Opt(help="CPUs to pin to, e.g. '1' or '2,3' (default: the last --threads allowed CPUs)")] = None,
    budget_min: Annotated[float, Opt(help="adaptive: minutes of measuring at most")] = 10.0,
    target_mape: Annotated[float, Opt(help="adaptive: stop when held-out MAPE (TTFT and TPOT) is at most this (%)")] = 5.0,
    upload: Annotated[Optional[str], Opt(help="service base URL to upload the table to")] = None,
    device: Annotated[Optional[str], Opt(help="device name registered on the service")] = None,
    token: Annotated[Optional[str], Opt(envvar="AMOEBA_DEVICE_TOKEN", help="device token")] = None,
    attempts: Annotated[int, Opt(help="upload attempts (exponential backoff)")] = 5,
    dry_run: Annotated[bool, Opt("--dry-run", help="list the shapes and estimate the duration; measure nothing")] = False,
    bias: Annotated[Optional[str], Opt(help="compensation biases of narrowed shapes: attn, ffn, both or none "
                                            "(default: as the model's strategy/ has them, else both)")] = None,
    config: dict[str, Any] | None = None,
) -> None:
    """Profile shapes with one engine at one workload (and optionally upload the table)."""
    if ctx.invoked_subcommand is not None:
        return
    from profilers.agent import dry_run as plan
    from profilers.agent import require_available
    from profilers.registry import get_profiler
    from profilers.workload import Workload

    if not dry_run and out is None:
        raise ConfigError("missing --out (see `amoeba profile --help`)")
    if upload and (not device or not token):
        raise ConfigError("--upload needs --device NAME and --token TOKEN (or AMOEBA_DEVICE_TOKEN)")
    engine = engine or _bootstrap_engine()
    wl = Workload.parse(workload)
    values = dict(config or {})
    values["cpu_affinity"] = tuple(int(x) for x in cpu_affinity.split(",") if x.strip()) if cpu_affinity else None
    prof_ = get_profiler(engine, build_config(MeasureSettings, values))
    require_available(prof_)
    prof_.check_workload(wl)
    grid = {"min_layers": min_layers, "widths": widths, "attn_widths": attn_widths, "depth_step": depth_step,
            "max_shapes": None if shapes == "adaptive" else max_shapes}
    src, specs = _source_and_shapes(model, shapes, grid, bias, attn_unit)
    if dry_run:
        console.print(f"{len(specs)} shapes on {engine} at {wl.key}: " + " ".join(s.key for s in specs), highlight=False)
        d = plan(prof_, src, specs, wl)
        st = prof_.settings
        console.print(f"probe {d.probe_shape.key}: {d.probe_seconds:.1f}s; estimated total {d.estimated_seconds / 60:.1f} min "
                      f"({st.warmup} warm-up + {st.repetitions} timed generations per shape)", highlight=False)
        return
    assert out is not None
    cmd = "amoeba " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != token)
    if shapes == "adaptive":
        table = _measure_adaptive(prof_, src, specs, wl, budget_min, target_mape, max_shapes, device, cmd)
    else:
        table = _measure_grid(prof_, src, specs, wl, engine, device, cmd)
    _save(table, out)
    if upload:
        profile_tools.upload_table(out, upload, device, token, attempts)


def _bootstrap_engine() -> str:
    """The engine of the service's first-start profile (``AMOEBA_BOOTSTRAP_ENGINE``)."""
    from server.settings import Settings

    return Settings().bootstrap_engine


def _source_and_shapes(model: Path | None, shapes: str, grid: dict[str, Any], bias: str | None, attn_unit: str | None) -> tuple[Any, list[Any]]:
    """The model source and its shapes; with no ``model``, the served checkpoint's base over that checkpoint's space."""
    from core.spec import parse_widths
    from profilers.shapes import GridOptions, resolve_shapes
    from profilers.source import ModelSource

    bias_modules = None if bias is None else bias.split(",")
    space = None
    if model is None:
        from cli.defaults import base_of, served_checkpoint
        from core.strategy.schema import Strategy

        ckpt = served_checkpoint()
        strategy = Strategy.load(ckpt / "strategy")
        space, model = strategy.space, base_of(ckpt)
        bias_modules = list(strategy.bias_modules) if bias_modules is None else bias_modules
        attn_unit = attn_unit or strategy.attn_unit
        console.print(f"profiling the served checkpoint {ckpt} (base {model})", highlight=False)
        mine = {"min_layers": space.min_layers, "widths": space.widths, "attn_widths": space.attn_ladder}
        grid = {k: (mine[k] if v is None and k in mine else v) for k, v in grid.items()}
    for k in ("widths", "attn_widths"):
        if isinstance(grid[k], str):
            grid[k] = parse_widths(grid[k])
    src = ModelSource.open(model, bias_modules=bias_modules, attn_unit=attn_unit)
    specs = resolve_shapes("grid" if shapes == "adaptive" else shapes, src, GridOptions(**{k: v for k, v in grid.items() if v is not None}))
    if space is not None and shapes in ("grid", "adaptive"):
        specs = [s for s in specs if s in space]  # uploads must lie in the checkpoint's space
    return src, specs


def _measure_grid(prof_: Any, src: Any, specs: list[Any], wl: Any, engine: str, device: str | None, cmd: str) -> Any:
    """Measure every shape (``run_profile``) under a progress bar."""
    from profilers.agent import run_profile

    with progress() as bar:
        st = prof_.settings
        task = bar.add_task(f"{engine} {wl.key}", total=len(specs) * st.rounds * st.passes, info="")

        def on_progress(done: int, total: int, key: str) -> None:
            bar.update(task, completed=done, info=key)

        return run_profile(prof_, src, specs, wl, device_name=device, command=cmd, on_progress=on_progress)


def _measure_adaptive(prof_: Any, src: Any, specs: list[Any], wl: Any, budget_min: float, target_mape: float, max_shapes: int | None,
                      device: str | None, cmd: str) -> Any:
    """Fit-guided profiling of a subset of ``specs`` within ``budget_min`` minutes, printing each step's held-out error."""
    from profilers.adaptive import AdaptiveOptions, Step
    from profilers.agent import run_adaptive_profile

    aopts = AdaptiveOptions(budget_s=budget_min * 60, target_mape_pct=target_mape, max_shapes=max_shapes)

    def on_step(st: Step) -> None:
        cv = ", ".join(f"{k} MAPE {v['mape_pct']:.1f}% / {v['within_10pct']:.0%} within ±10%" for k, v in st.cv.items())
        console.print(f"{st.shapes} shapes after {st.elapsed_s:.0f}s: {cv}", highlight=False)

    table, res = run_adaptive_profile(prof_, src, specs, wl, aopts, device_name=device, command=cmd, on_step=on_step)
    console.print(f"adaptive: {len(table.rows)} of {len(specs)} grid shapes, stopped: {res.stop_reason}", highlight=False)
    return table


def _save(table: Any, out: Path) -> None:
    """Write the table and print its size, busy rows and noise floor."""
    from profilers.table import save_table

    save_table(table, out)
    n_busy = sum(r.busy for r in table.rows)
    floor = table.noise_floor
    fl = (f"; noise floor TTFT {floor.ttft_ms.median_abs_delta_pct:.1f}% / TPOT {floor.tpot_ms.median_abs_delta_pct:.1f}% "
          "median |Δ| between passes") if floor else ""
    console.print(f"wrote {out}: {len(table.rows)} shapes ({n_busy} busy), sha256 {table.content_sha256()[:12]}{fl}", highlight=False)


def register(app: typer.Typer) -> None:
    """Mount ``amoeba profile`` and its ``upload``, ``fit``, ``engines`` subcommands on ``app``."""
    prof = typer.Typer(help="Measure latency of subnet shapes on this device and upload the profile.", no_args_is_help=False)
    prof.callback(invoke_without_command=True)(profile)
    profile_tools.register(prof)
    app.add_typer(prof, name="profile")
