"""``amoeba profile``: measure shapes on this device, save the table, upload it; ``profile upload|fit|engines``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from core.cli.common import cli_errors, console, progress
from core.errors import ConfigError

ENGINE_HELP = "profiler plugin: torch, onnxruntime, onnxruntime_genai, llamacpp, tensorrt_llm, mlc_llm"


def _upload(table: Path, url: str, device: str | None, token: str | None, attempts: int, base_delay_s: float) -> None:
    from profilers.errors import UploadError
    from profilers.upload import upload_file

    if not device or not token:
        raise ConfigError("uploading needs --device NAME and --token TOKEN (or AMOEBA_DEVICE_TOKEN)")

    def on_retry(i: int, e: UploadError, delay: float) -> None:
        console.print(f"[yellow]upload attempt {i} failed ({e}); retrying in {delay:.0f}s[/yellow]", highlight=False)

    try:
        res = upload_file(table, url, device, token, attempts=attempts, base_delay_s=base_delay_s, on_retry=on_retry)
    except UploadError as e:
        hint = f"; the table is kept at {table}: retry with `amoeba profile upload {table} --url {url} --device {device} --token ...`"
        raise UploadError(f"{e}{hint}", retryable=e.retryable, status=e.status) from None
    console.print(f"uploaded {table} to {url} as device {device}: {res.status} (HTTP {res.http_status}, "
                  f"attempt {res.attempts}, sha256 {res.content_sha256[:12]})", highlight=False)


def register(app: typer.Typer) -> None:
    """Mount ``amoeba profile`` (and its ``upload``, ``fit``, ``engines`` subcommands) on ``app``."""
    prof = typer.Typer(help="Measure latency of subnet shapes on this device and upload the profile.", no_args_is_help=False)

    @prof.callback(invoke_without_command=True)
    @cli_errors
    def profile(
        ctx: typer.Context,
        engine: Optional[str] = typer.Option(None, help=ENGINE_HELP),
        workload: str = typer.Option("b1-p128-g64", help="workload key b{batch}-p{prompt}-g{gen}[-dtype]"),
        shapes: str = typer.Option("grid", help="'grid' (the model's shape space), 'adaptive' (fit-guided subset of the grid "
                                                "within --budget-min) or a file of shape keys"),
        model: Optional[Path] = typer.Option(None, help="base model dir (random weights per shape) or an exported subnet dir"),
        out: Optional[Path] = typer.Option(None, help="where to write the profile table (JSON)"),
        min_layers: int = typer.Option(1, help="grid: smallest depth"),
        depth_step: int = typer.Option(1, help="grid: keep every n-th depth (L and --min-layers always kept)"),
        max_shapes: Optional[int] = typer.Option(None, help="thin the shape list evenly to at most this many"),
        widths: str = typer.Option("1,0.875,0.75,0.625", help="grid: MLP width ladder"),
        attn_widths: Optional[str] = typer.Option(None, help="grid: attention width ladder (default: the model's, from its "
                                                             "strategy/ or its unit count)"),
        attn_unit: Optional[str] = typer.Option(None, help="attention unit kv_group or q_head (default: the model's strategy/, else kv_group)"),
        repetitions: int = typer.Option(2, help="timed generations per shape per round"),
        warmup: int = typer.Option(1, help="untimed generations per shape per round"),
        rounds: int = typer.Option(2, help="interleaved rounds per pass (every shape once per round)"),
        passes: int = typer.Option(2, help="separate passes (>= 2 records the test-retest noise floor)"),
        threads: int = typer.Option(1, help="pinned compute threads"),
        cpu_affinity: Optional[str] = typer.Option(None, help="CPUs to pin to, e.g. '1' or '2,3' (default: the last --threads allowed CPUs)"),
        budget_min: float = typer.Option(10.0, help="adaptive: minutes of measuring at most"),
        target_mape: float = typer.Option(5.0, help="adaptive: stop when held-out MAPE (TTFT and TPOT) is at most this (%)"),
        busy: str = typer.Option("mark", help="when other processes compete for the CPU: 'mark' rows or 'refuse'"),
        device_kind: str = typer.Option("cpu", "--device-kind", help="cpu or cuda"),
        upload: Optional[str] = typer.Option(None, help="service base URL to upload the table to"),
        device: Optional[str] = typer.Option(None, help="device name registered on the service"),
        token: Optional[str] = typer.Option(None, envvar="AMOEBA_DEVICE_TOKEN", help="device token"),
        attempts: int = typer.Option(5, help="upload attempts (exponential backoff)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="list the shapes and estimate the duration; measure nothing"),
        bias: Optional[str] = typer.Option(None, help="compensation biases of narrowed shapes: attn, ffn, both or none "
                                                      "(default: as the model's strategy/ has them, else both)"),
    ) -> None:
        """Profile shapes with one engine at one workload (and optionally upload the table)."""
        if ctx.invoked_subcommand is not None:
            return
        from core.spec import parse_widths
        from profilers.agent import dry_run as plan
        from profilers.agent import require_available
        from profilers.base import MeasureSettings
        from profilers.registry import get_profiler
        from profilers.shapes import GridOptions, resolve_shapes
        from profilers.source import ModelSource
        from profilers.table import save_table
        from profilers.workload import Workload

        missing = [n for n, v in (("--engine", engine), ("--model", model)) if v is None]
        if not dry_run and out is None:
            missing.append("--out")
        if missing:
            raise ConfigError(f"missing {', '.join(missing)} (see `amoeba profile --help`)")
        assert engine is not None and model is not None
        if upload and (not device or not token):
            raise ConfigError("--upload needs --device NAME and --token TOKEN (or AMOEBA_DEVICE_TOKEN)")
        wl = Workload.parse(workload)
        affinity = tuple(int(x) for x in cpu_affinity.split(",") if x.strip()) if cpu_affinity else None
        settings = MeasureSettings(warmup=warmup, repetitions=repetitions, threads=threads, busy_policy=busy,  # type: ignore[arg-type]
                                   device=device_kind, rounds=rounds, passes=passes, cpu_affinity=affinity)
        prof_ = get_profiler(engine, settings)
        require_available(prof_)
        prof_.check_workload(wl)
        src = ModelSource.open(model, bias_modules=None if bias is None else [x for x in bias.split(",")], attn_unit=attn_unit)
        opts = GridOptions(min_layers=min_layers, widths=parse_widths(widths), depth_step=depth_step,
                           max_shapes=None if shapes == "adaptive" else max_shapes, attn_widths=parse_widths(attn_widths) if attn_widths else None)
        specs = resolve_shapes("grid" if shapes == "adaptive" else shapes, src, opts)
        if dry_run:
            console.print(f"{len(specs)} shapes on {engine} at {wl.key}: " + " ".join(s.key for s in specs), highlight=False)
            d = plan(prof_, src, specs, wl)
            console.print(f"probe {d.probe_shape.key}: {d.probe_seconds:.1f}s; estimated total {d.estimated_seconds / 60:.1f} min "
                          f"({warmup} warm-up + {repetitions} timed generations per shape)", highlight=False)
            return
        assert out is not None
        cmd = "amoeba " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != token)
        if shapes == "adaptive":
            from profilers.adaptive import AdaptiveOptions, Step
            from profilers.agent import run_adaptive_profile

            aopts = AdaptiveOptions(budget_s=budget_min * 60, target_mape_pct=target_mape, max_shapes=max_shapes)

            def on_step(st: Step) -> None:
                cv = ", ".join(f"{k} MAPE {v['mape_pct']:.1f}% / {v['within_10pct']:.0%} within ±10%" for k, v in st.cv.items())
                console.print(f"{st.shapes} shapes after {st.elapsed_s:.0f}s: {cv}", highlight=False)

            table, res = run_adaptive_profile(prof_, src, specs, wl, aopts, device_name=device, command=cmd, on_step=on_step)
            console.print(f"adaptive: {len(table.rows)} of {len(specs)} grid shapes, stopped: {res.stop_reason}", highlight=False)
        else:
            table = _measure_grid(prof_, src, specs, wl, engine, device, cmd)
        save_table(table, out)
        n_busy = sum(r.busy for r in table.rows)
        floor = table.noise_floor
        fl = (f"; noise floor TTFT {floor.ttft_ms.median_abs_delta_pct:.1f}% / TPOT {floor.tpot_ms.median_abs_delta_pct:.1f}% "
              "median |Δ| between passes") if floor else ""
        console.print(f"wrote {out}: {len(table.rows)} shapes ({n_busy} busy), sha256 {table.content_sha256()[:12]}{fl}", highlight=False)
        if upload:
            _upload(out, upload, device, token, attempts, 1.0)

    def _measure_grid(prof_: Any, src: Any, specs: list[Any], wl: Any, engine: str, device: str | None, cmd: str) -> Any:
        from profilers.agent import run_profile

        with progress() as bar:
            st = prof_.settings
            task = bar.add_task(f"{engine} {wl.key}", total=len(specs) * st.rounds * st.passes, info="")

            def on_progress(done: int, total: int, key: str) -> None:
                bar.update(task, completed=done, info=key)

            return run_profile(prof_, src, specs, wl, device_name=device, command=cmd, on_progress=on_progress)

    @prof.command("upload")
    @cli_errors
    def upload_cmd(
        table: Path = typer.Argument(..., help="profile table JSON written by `amoeba profile`"),
        url: str = typer.Option(..., help="service base URL"),
        device: str = typer.Option(..., help="device name registered on the service"),
        token: str = typer.Option(..., envvar="AMOEBA_DEVICE_TOKEN", help="device token"),
        attempts: int = typer.Option(5, help="attempts (exponential backoff from 1 s, capped at 30 s)"),
    ) -> None:
        """Upload (or retry uploading) a saved profile table."""
        _upload(table, url, device, token, attempts, 1.0)

    @prof.command("fit")
    @cli_errors
    def fit_cmd(
        table: Path = typer.Argument(..., help="profile table JSON"),
        out: Path = typer.Option(..., help="predictor state JSON to write"),
        include_busy: bool = typer.Option(False, help="also fit rows measured on a busy machine"),
    ) -> None:
        """Fit the latency predictor on a table and report held-out error per quantity."""
        from profilers.predictor.model import LatencyPredictor
        from profilers.table import load_table

        pred = LatencyPredictor.fit(load_table(table), include_busy=include_busy)
        pred.save(out)
        for name, t in pred.state.targets.items():
            h = t.held_out
            console.print(f"{name}: {t.method} (held-out MAPE {h.mape_pct:.1f}%, {h.within_10pct:.0%} within ±10%, n={h.n}, {h.splits} CV fits; "
                          + ", ".join(f"{k} {v.mape_pct:.1f}%" for k, v in t.cv.items()) + ")", highlight=False)
        fl = pred.state.noise_floor
        if fl is not None:
            console.print(f"noise floor (test-retest): TTFT {fl.ttft_ms.median_abs_delta_pct:.1f}% median |Δ| ({fl.ttft_ms.within_10pct:.0%} within ±10%), "
                          f"TPOT {fl.tpot_ms.median_abs_delta_pct:.1f}% ({fl.tpot_ms.within_10pct:.0%} within ±10%)", highlight=False)
        console.print(f"wrote {out}", highlight=False)

    @prof.command("engines")
    def engines_cmd() -> None:
        """List the registered engines and whether they can run here."""
        from profilers.registry import names, profiler_class

        for n in names():
            reason = profiler_class(n).unavailable_reason()
            typer.echo(f"{n}: " + ("available" if reason is None else f"unavailable: {reason}"))

    app.add_typer(prof, name="profile")
