"""``amoeba accuracy``: fill a checkpoint's accuracy table (every shape, or a list) into the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from cli.common import cli_errors, console, progress
from cli.config_file import with_config_file
from cli.defaults import CHECKPOINT_HELP, accuracy_metric_help, checkpoint_or_served, ppl_windows
from core.data.paths import ACCURACY_CACHE as DEFAULT_CACHE
from core.search.config import MC_SCORES, MetricSettings


@cli_errors
@with_config_file
def accuracy_cmd(
    checkpoint: Annotated[Optional[Path], typer.Option(help=f"AmoebaLLM checkpoint, or a base model directory with a strategy/ subdirectory; "
                                                            f"{CHECKPOINT_HELP}.")] = None,
    calib_text: Annotated[Optional[Path], typer.Option(help="Calibration text for ppl (default: calibration.txt in the checkpoint or base dir).")] = None,
    metric: Annotated[str, typer.Option(help=accuracy_metric_help())] = "ppl",
    cache: Annotated[Path, typer.Option(help="Accuracy cache file (JSON).")] = DEFAULT_CACHE,
    shapes: Annotated[str, typer.Option(help="'all' (the strategy's shape space) or comma-separated shape keys.")] = "all",
    window: Annotated[Optional[int], typer.Option(help="ppl window in tokens (capped by the model context; default: the service's, "
                                                       "AMOEBA_CALIB_WINDOW, as amoeba search).")] = None,
    max_windows: Annotated[Optional[int], typer.Option(help="ppl: score only the first N windows (0 = all; default: the service's, "
                                                            "AMOEBA_CALIB_MAX_WINDOWS, as amoeba search).")] = None,
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = MetricSettings.batch_size,
    limit: Annotated[Optional[int], typer.Option(help="mc: items per task (first N, or a seeded sample with --seed).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="mc: seed of the --limit sample.")] = None,
    mc_score: Annotated[str, typer.Option(help=f"mc: {', '.join(MC_SCORES)}.")] = MetricSettings.mc_score,
    data_dir: Annotated[Optional[Path], typer.Option(help="Shared data directory for mc tasks.")] = None,
    json_out: Annotated[Optional[Path], typer.Option(help="Also write the table as JSON here.")] = None,
    threads: Annotated[int, typer.Option(help="torch intra-op threads.")] = 1,
) -> None:
    """Compute (or read from the cache) the accuracy of every shape of a checkpoint. Higher accuracy is better."""
    import torch

    from core.atomic import write_json
    from core.search.session import AccuracySettings, open_accuracy
    from core.spec import SubnetSpec

    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    if json_out is not None and json_out.is_dir():
        raise ValueError(f"--json-out {json_out} is a directory")
    torch.set_num_threads(threads)
    ms = MetricSettings(**ppl_windows(window, max_windows), calib_text=calib_text, data_dir=data_dir, limit=limit, seed=seed,  # type: ignore[arg-type]
                        batch_size=batch_size, mc_score=mc_score)
    ckpt, table = open_accuracy(AccuracySettings(checkpoint_or_served(checkpoint), metric, cache, ms))
    space = ckpt.strategy.space
    todo = list(space) if shapes.strip() == "all" else [space.validate(SubnetSpec.parse(k)) for k in shapes.split(",") if k.strip()]
    if not todo:
        raise ValueError("--shapes lists no shape")
    missing = {s.key for s in table.missing(todo)}
    rows = []
    with progress() as bar:
        task = bar.add_task("accuracy", total=len(todo), info=f"{len(missing)} to evaluate, {len(todo) - len(missing)} cached")
        for i, s in enumerate(todo):
            rec = table.record(s)
            rows.append((s.key, rec, s.key in missing))
            bar.update(task, completed=i + 1, info=f"{s.key} {rec.raw_name} {rec.raw:.3f}")
    out = Table(title=f"{table.metric.name} accuracy (higher is better) of {ckpt.path} [{ckpt.checkpoint_sha256[:12]}]")
    for col in ("shape", rows[0][1].raw_name, "accuracy", "source"):
        out.add_column(col, justify="left" if col == "shape" else "right")
    for key, rec, new in rows:
        out.add_row(key, f"{rec.raw:.4f}", f"{rec.accuracy:.4f}", "evaluated" if new else "cache")
    Console().print(out)
    console.print(f"{len(missing)} evaluated, {len(rows) - len(missing)} from cache {cache}")
    if json_out is not None:
        doc = {"checkpoint": str(ckpt.path), "checkpoint_sha256": ckpt.checkpoint_sha256, "metric": table.metric.name,
               "data_sha256": table.metric.data_sha256, "higher_is_better": True,
               "shapes": [{"shape": k, **rec.to_dict()} for k, rec, _ in rows]}
        write_json(json_out, doc)
        console.print(f"wrote {json_out}")


def register(app: typer.Typer) -> None:
    """Mount ``amoeba accuracy``."""
    app.command("accuracy")(accuracy_cmd)
