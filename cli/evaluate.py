"""``amoeba eval``: perplexity and multiple-choice accuracy of a model directory, or of an elastic shape."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from cli.common import cli_errors, console, progress
from cli.config_file import with_config_file
from cli.defaults import CHECKPOINT_HELP
from cli.options import build_config, config_options
from core.eval.plan import TASK_NAMES, EvalPlan, parse_task_names

#: ``EvalPlan`` field → help of its option; the defaults are the plan's (a field not listed has no option)
HELP = {
    "wikitext2": "Perplexity on the WikiText-2 raw test split (rows joined by blank lines).",
    "limit": "Items per task: the first N (or a seeded sample with --seed).",
    "seed": "With --limit: a seeded random sample (stratified by MMLU subject) instead of the first N.",
    "window": "Perplexity window in tokens (default and cap: the model context).",
    "max_windows": "Score only the first N perplexity windows.",
    "batch_size": "Sequences per forward pass.",
    "data_root": "Shared data directory (default $AMOEBA_DATA_DIR or ../shared/data).",
}
TASKS_HELP = f"Comma-separated tasks: {','.join(TASK_NAMES)}."


@cli_errors
@with_config_file
@config_options(EvalPlan, HELP, rename={"data_root": "data_dir"})
def eval_cmd(
    model: Annotated[Optional[Path], typer.Option(help="HF model directory: a base model, or an exported subnet.")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help=f"AmoebaLLM checkpoint directory: evaluate with adapters at --shape ({CHECKPOINT_HELP}, "
                                                            "unless --model is given).")] = None,
    strategy: Annotated[Optional[Path], typer.Option(help="Stage 1 strategy directory: evaluate the elastic model at --shape.")] = None,
    shape: Annotated[Optional[str], typer.Option(help="Shape key, e.g. L8-a0.75-f0.625 (default: the full shape).")] = None,
    ppl: Annotated[Optional[list[Path]], typer.Option(help="Text file to score perplexity on (repeatable).")] = None,
    tasks: Annotated[Optional[str], typer.Option(help=TASKS_HELP)] = None,
    json_out: Annotated[Optional[Path], typer.Option(help="Write all results as JSON here.")] = None,
    tokenizer: Annotated[Optional[Path], typer.Option(help="Tokenizer directory (default: the model directory).")] = None,
    threads: Annotated[int, typer.Option(help="torch intra-op threads.")] = 1,
    config: dict[str, Any] | None = None,
) -> None:
    """Evaluate a model: perplexity (files, WikiText-2) and multiple-choice acc / acc_norm."""
    import torch
    from transformers.utils import logging as hf_logging

    from core.eval.recipe import load_inputs, run_eval
    from core.eval.target import open_checkpoint_target, open_target

    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    values = dict(config or {}, ppl_files=tuple(ppl or ()), tasks=parse_task_names(tasks) if tasks is not None else ())
    plan = build_config(EvalPlan, values)
    if plan.seed is not None and plan.limit is None:
        raise ValueError("--seed only selects a sample together with --limit")
    if json_out is not None and json_out.is_dir():
        raise ValueError(f"--json-out {json_out} is a directory")
    inputs = load_inputs(plan)  # every data file is read and checked before the model loads
    hf_logging.disable_progress_bar()
    if model is not None and checkpoint is not None:
        raise ValueError("give exactly one of --model or --checkpoint (or neither: the served checkpoint)")
    if model is None and checkpoint is None:
        from cli.defaults import served_checkpoint

        checkpoint = served_checkpoint()
    if checkpoint is not None:
        if strategy is not None:
            raise ValueError("--strategy comes with the checkpoint; do not pass it with --checkpoint")
        target = open_checkpoint_target(checkpoint, shape, tokenizer)
    else:
        assert model is not None
        target = open_target(model, strategy, shape, tokenizer)
    with progress() as bar:
        bars: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in bars:
                bars[stage] = bar.add_task(stage, total=total, info="")
            bar.update(bars[stage], completed=done)

        report = run_eval(target, plan, inputs, on_progress)
    Console().print(_table(report.to_json()))
    if json_out is not None:
        report.save(json_out)
        console.print(f"wrote {json_out}")


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _table(res: dict[str, Any]) -> Table:
    t = res["target"]
    table = Table(title=f"{t.get('model')}  shape {t.get('shape') or '-'}")
    for col in ("eval", "metric", "value", "stderr", "n", "chance"):
        table.add_column(col, justify="left" if col in ("eval", "metric") else "right")
    for name, r in res["perplexity"].items():
        table.add_row(name, "ppl", _fmt(r["ppl"], 3), "-", f"{r['tokens_scored']} tok", "-")
    for name, r in res["tasks"].items():
        table.add_row(name, "acc", _fmt(r["acc"]), _fmt(r["acc_stderr"]), str(r["n"]), _fmt(r["chance"], 3))
        table.add_row(name, "acc_norm", _fmt(r["acc_norm"]), _fmt(r["acc_norm_stderr"]), str(r["n"]), _fmt(r["chance"], 3))
        if r["macro_acc"] is not None:
            table.add_row(name, "acc (subject mean)", _fmt(r["macro_acc"]), "-", f"{len(r['subject_acc'])} subj", "-")
    return table


def register(app: typer.Typer) -> None:
    """Mount ``amoeba eval``."""
    app.command("eval")(eval_cmd)
