"""``amoeba profile upload|fit|engines``: upload a saved table, fit the latency predictor, list the engines."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import cli_errors, console
from core.errors import ConfigError


def upload_table(table: Path, url: str, device: str | None, token: str | None, attempts: int, base_delay_s: float = 1.0) -> None:
    """Upload a saved table with retries; an ``UploadError`` says how to retry by hand (the table is kept)."""
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


@cli_errors
def upload_cmd(
    table: Path = typer.Argument(..., help="profile table JSON written by `amoeba profile`"),
    url: str = typer.Option(..., help="service base URL"),
    device: str = typer.Option(..., help="device name registered on the service"),
    token: str = typer.Option(..., envvar="AMOEBA_DEVICE_TOKEN", help="device token"),
    attempts: int = typer.Option(5, help="attempts (exponential backoff from 1 s, capped at 30 s)"),
) -> None:
    """Upload (or retry uploading) a saved profile table."""
    upload_table(table, url, device, token, attempts)


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


def engines_cmd() -> None:
    """List the registered engines and whether they can run here."""
    from profilers.registry import names, profiler_class

    for n in names():
        reason = profiler_class(n).unavailable_reason()
        typer.echo(f"{n}: " + ("available" if reason is None else f"unavailable: {reason}"))


def register(prof: typer.Typer) -> None:
    """Mount ``upload``, ``fit`` and ``engines`` on the ``amoeba profile`` group."""
    prof.command("upload")(upload_cmd)
    prof.command("fit")(fit_cmd)
    prof.command("engines")(engines_cmd)
