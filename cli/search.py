"""``amoeba search`` and ``amoeba search-worker``: the best shape of a checkpoint under a latency budget.

Latency comes from a measured profile table (``profilers``): a ``LatencyPredictor`` is fitted on it (or loaded
with ``--predictor``, see ``cli.tables``).
``search-worker`` runs Optuna trials on a shared study (``--storage URL --study NAME``); start as many as you like.
Exit codes: 0 found, 1 infeasible (the message names the fastest achievable latency), 2 bad input.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, get_args

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from cli.common import cli_errors, console, progress
from cli.config_file import with_config_file
from cli.defaults import CHECKPOINT_HELP, accuracy_metric_help, checkpoint_or_served, ppl_windows
from cli.options import build_config, config_options
from cli.tables import latency_source
from core.data.paths import ACCURACY_CACHE as DEFAULT_CACHE
from core.errors import ConfigError
from core.latency import LatencyMetric
from core.search.config import MetricSettings, OptunaConfig
from core.search.objectives import OBJECTIVES
from core.search.registries import SEARCHERS

if TYPE_CHECKING:
    from core.search.query import Answer, ShapeResult

#: ``OptunaConfig`` field → help of its option; the defaults are the config's
OPTUNA_HELP = {"n_trials": "Optuna trials per worker.", "seed": "Optuna sampler seed."}
METHOD_HELP = f"auto (exhaustive for uniform shapes, optuna for --groups > 1) or a searcher: {', '.join(SEARCHERS.names())}."


def _result_row(t: Table, tag: str, r: ShapeResult, ppl: bool, e2e: bool) -> None:
    cells = [tag, r.shape, "" if r.accuracy is None else f"{r.accuracy:.4f}"]
    if ppl:
        cells.append("" if r.accuracy is None else f"{math.exp(-r.accuracy):.2f}")
    cells += [f"{r.ttft_ms:.2f}", f"{r.tpot_ms:.3f}", *([f"{r.latency_ms:.1f}"] if e2e else []), "" if r.peak_mem_mb is None else f"{r.peak_mem_mb:.0f}"]
    t.add_row(*cells)


def render(ans: Answer, ppl: bool) -> Table:
    """The answer (or the fastest shape when infeasible) and its Pareto neighbours as a rich table."""
    b = ans.budget
    mem = f", memory ≤ {b.memory_mb:g} MB" if b.memory_mb is not None else ""
    t = Table(title=f"{b.metric} ≤ {b.latency_ms:g} ms{mem} (accuracy: higher is better)", box=box.SIMPLE_HEAD)
    e2e = b.metric == "e2e"
    cols = ["", "shape", "accuracy", *(["ppl"] if ppl else []), "ttft ms", "tpot ms", *(["e2e ms"] if e2e else []), "peak MB"]
    for col in cols:
        t.add_column(col, justify="left" if col in ("", "shape") else "right", no_wrap=True)
    if ans.kind == "infeasible":
        if ans.fastest is not None:
            _result_row(t, "fastest", ans.fastest, ppl, e2e)
        return t
    _result_row(t, "best", ans.best, ppl, e2e)
    for r in ans.neighbours:
        _result_row(t, "faster" if r.latency_ms <= ans.best.latency_ms else "slower", r, ppl, e2e)
    return t


def _run(ctx: typer.Context, **kw: Any) -> None:
    import optuna
    import torch

    from core.search.pipeline import ModelFingerprint, Query, SearchContext, run_query
    from core.search.query import Budget
    from core.search.session import AccuracySettings, open_accuracy
    from core.search.shapes import GroupedSpace, LatencyView, UniformSpace
    from server.runtime import read_identity
    from server.services.profiles import table_fingerprint

    worker = ctx.info_name == "search-worker"
    if worker and (kw["storage"] is None or kw["study"] is None):
        raise ConfigError("search-worker needs --storage URL and --study NAME (the shared Optuna study)")
    if kw["threads"] < 1:
        raise ConfigError(f"--threads must be >= 1, got {kw['threads']}")
    if kw["groups"] < 1:
        raise ConfigError(f"--groups must be >= 1, got {kw['groups']}")
    if kw["json_out"] is not None and kw["json_out"].is_dir():
        raise ConfigError(f"--json-out {kw['json_out']} is a directory")
    method = "optuna" if worker or kw["storage"] is not None else kw["method"]
    if method == "auto":  # uniform shapes: the pipeline's choice (the index once every accuracy is known, else exhaustive)
        method = "auto" if kw["groups"] == 1 else "optuna"
    known = ("auto", *SEARCHERS.names())
    if method not in known:
        raise ConfigError(f"--method must be one of {', '.join(known)}, got {method!r}")
    limits = tuple((k, kw[k]) for k in ("ttft_ms", "e2e_ms", "tpot_ms") if kw.get(k) is not None)
    budget = Budget(kw["budget_ms"], kw["metric"], kw["memory_mb"], limits)
    optuna_cfg = build_config(OptunaConfig, dict(kw["config"], storage=kw["storage"], study_name=kw["study"]))
    lat = latency_source(kw["table"], kw["engine"], kw["workload"], kw["device"], kw["predictor"])
    torch.set_num_threads(kw["threads"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ms = MetricSettings(**ppl_windows(kw["window"], kw["max_windows"]), calib_text=kw["calib_text"], batch_size=kw["batch_size"])  # type: ignore[arg-type]
    ckpt, table = open_accuracy(AccuracySettings(checkpoint_or_served(kw["checkpoint"]), kw["accuracy_metric"], kw["accuracy_cache"], ms))
    checkpoint_model = ModelFingerprint.of(ckpt.elastic.info, read_identity(Path(ckpt.path)).fingerprint.config_sha256)
    base = ckpt.strategy.space
    space = UniformSpace(base) if kw["groups"] == 1 else GroupedSpace(base, kw["groups"])
    attrs = {"checkpoint_sha256": ckpt.checkpoint_sha256, "accuracy_metric": table.metric.name, "accuracy_data_sha256": table.metric.data_sha256,
             "latency_table_sha256": lat.table_sha256}
    with progress() as bar:
        task = bar.add_task(method, total=None, info="")

        def on_step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, info=f"{table.evaluations} evaluated")

        sctx = SearchContext(space, lambda: LatencyView(lat.model), table, evaluate=True, profile_model=table_fingerprint(lat.table),
                            checkpoint_model=checkpoint_model, attrs=attrs, on_step=on_step)
        ans = run_query(sctx, Query(budget, kw["objective"], method, kw["neighbours"], optuna_cfg if method in ("optuna", "nsga2") else None))
    doc = {"answer": ans.to_dict(), "checkpoint": str(ckpt.path), **attrs, "device": lat.table.device.name, "engine": lat.table.engine.name,
           "workload": lat.table.workload, "accuracy_higher_is_better": True, "optuna": asdict(optuna_cfg) if method in ("optuna", "nsga2") else None}
    if kw["json_out"] is not None:
        from core.atomic import write_json

        write_json(kw["json_out"], doc)
    if kw["json"]:
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    else:
        Console().print(render(ans, table.metric.name == "ppl"))
    if ans.kind == "infeasible":
        console.print(f"[yellow]infeasible:[/yellow] {ans.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"{ans.method}: {ans.evaluations} accuracy evaluations, {ans.trials} trials, {ans.elapsed_s:.2f} s; "
                  f"front of {len(ans.front)} shapes{'' if ans.front_complete else ' (partial: fill it with amoeba accuracy)'}", highlight=False)


@cli_errors
@with_config_file
@config_options(OptunaConfig, OPTUNA_HELP, rename={"n_trials": "trials"})
def search_cmd(
    ctx: typer.Context,
    table: Annotated[list[Path], typer.Option(help="Profile table JSON (repeatable; filtered by --engine/--workload/--device).")],
    budget_ms: Annotated[float, typer.Option(help="Latency budget in milliseconds.")],
    checkpoint: Annotated[Optional[Path], typer.Option(help=f"AmoebaLLM checkpoint (or base model dir with strategy/); {CHECKPOINT_HELP}.")] = None,
    metric: Annotated[str, typer.Option(help=f"Budgeted latency: {', '.join(get_args(LatencyMetric))} (e2e = ttft + (gen_len - 1) * tpot).")] = "tpot",
    memory_mb: Annotated[Optional[float], typer.Option(help="Peak memory budget in MB.")] = None,
    ttft_ms: Annotated[Optional[float], typer.Option(help="Also bound the time to first token (ms).")] = None,
    e2e_ms: Annotated[Optional[float], typer.Option(help="Also bound the end-to-end latency (ms).")] = None,
    tpot_ms: Annotated[Optional[float], typer.Option(help="Also bound the time per output token (ms).")] = None,
    objective: Annotated[str, typer.Option(help=f"{', '.join(OBJECTIVES.names())} (memory_latency needs --memory-mb; ties go to less memory).")] = "accuracy",
    engine: Annotated[Optional[str], typer.Option(help="Use the table of this engine.")] = None,
    workload: Annotated[Optional[str], typer.Option(help="Use the table of this workload, e.g. b1-p128-g64.")] = None,
    device: Annotated[Optional[str], typer.Option(help="Use the table of this device.")] = None,
    predictor: Annotated[Optional[Path], typer.Option(help="Saved predictor state (default: fit one on the table).")] = None,
    accuracy_cache: Annotated[Path, typer.Option(help="Accuracy cache file (JSON), shared with amoeba accuracy.")] = DEFAULT_CACHE,
    accuracy_metric: Annotated[str, typer.Option(help=accuracy_metric_help())] = "ppl",
    calib_text: Annotated[Optional[Path], typer.Option(help="Calibration text for ppl (default: calibration.txt of the checkpoint).")] = None,
    window: Annotated[Optional[int], typer.Option(help="ppl window in tokens (default: the service's, AMOEBA_CALIB_WINDOW).")] = None,
    max_windows: Annotated[Optional[int], typer.Option(help="ppl: score only the first N windows (default: the service's, AMOEBA_CALIB_MAX_WINDOWS; "
                                                            "0 = the whole text).")] = None,
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = MetricSettings.batch_size,
    method: Annotated[str, typer.Option(help=METHOD_HELP)] = "auto",
    groups: Annotated[int, typer.Option(help="Layer groups with their own widths (1 = uniform shapes).")] = 1,
    storage: Annotated[Optional[str], typer.Option(help="Optuna storage URL (sqlite:///f.db, postgresql+psycopg://...); implies optuna.")] = None,
    study: Annotated[Optional[str], typer.Option(help="Optuna study name (with --storage).")] = None,
    neighbours: Annotated[int, typer.Option(help="Pareto neighbours on each side of the answer.")] = 2,
    json_: Annotated[bool, typer.Option("--json", help="Print the answer as JSON on stdout instead of a table.")] = False,
    json_out: Annotated[Optional[Path], typer.Option(help="Also write the answer as JSON here.")] = None,
    threads: Annotated[int, typer.Option(help="torch intra-op threads.")] = 1,
    config: dict[str, Any] | None = None,
) -> None:
    """The most accurate shape whose predicted latency fits the budget, with its Pareto neighbours."""
    _run(ctx, **{k: v for k, v in locals().items() if k != "ctx"} | {"json": json_})


def register(app: typer.Typer) -> None:
    """Mount ``amoeba search`` and ``amoeba search-worker`` (same options; the worker needs --storage and --study)."""
    app.command("search")(search_cmd)
    app.command("search-worker", help="Run Optuna trials on a shared study (--storage URL --study NAME) and print its best shape so far.")(search_cmd)
