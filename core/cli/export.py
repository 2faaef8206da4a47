"""``amoeba export``: cut one shape out of a base model + strategy into a standalone HF model directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from core.cli.common import cli_errors, console

if TYPE_CHECKING:
    from core.elastic.model import ElasticModel

DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class ExportSource:
    """What to export from: the elastic model (strategy attached), its tokenizer and identity for the card."""

    elastic: ElasticModel
    tokenizer_dir: Path | None
    source: dict[str, Any] = field(default_factory=dict)


def open_base_and_strategy(model_dir: Path, strategy_dir: Path) -> ExportSource:
    """Load the base model and a Stage 1 strategy made for exactly these weights (``StrategyError`` otherwise)."""
    from core.elastic.model import ElasticModel
    from core.export.writer import TOKENIZER_FILES
    from core.model.loader import load_base_model, read_config, weights_sha256
    from core.strategy.schema import Strategy

    read_config(model_dir)
    strategy = Strategy.load(strategy_dir)
    sha = weights_sha256(model_dir)
    hf, info = load_base_model(model_dir)
    strategy.check_model(info, sha)
    has_tok = any((model_dir / n).is_file() for n in TOKENIZER_FILES)
    src = {"kind": "base+strategy", "base_model": str(model_dir.resolve()), "base_sha256": sha, "strategy": str(strategy_dir.resolve())}
    return ExportSource(ElasticModel(hf, strategy), model_dir if has_tok else None, src)


def open_checkpoint_source(checkpoint: Path) -> ExportSource:
    """An AmoebaLLM checkpoint (base + strategy + SMoL adapters), or a base directory with ``strategy/``."""
    from core.checkpoint import open_checkpoint

    ck = open_checkpoint(checkpoint)
    src = {"kind": ck.kind, "checkpoint": str(ck.path), "checkpoint_sha256": ck.checkpoint_sha256, "base_model": str(ck.base_dir)}
    return ExportSource(ck.elastic, ck.tokenizer_dir, src)


def resolve_source(model: Path | None, strategy: Path | None, checkpoint: Path | None = None) -> ExportSource:
    """The one place that decides what to export from: ``--checkpoint`` or ``--model`` + ``--strategy``."""
    if checkpoint is not None:
        if model is not None or strategy is not None:
            raise ValueError("give either --checkpoint or --model/--strategy, not both")
        console.print(f"loading checkpoint {checkpoint} ...")
        return open_checkpoint_source(checkpoint)
    if model is None or strategy is None:
        raise ValueError("give --checkpoint, or --model and --strategy")
    console.print(f"loading {model} with strategy {strategy} ...")
    return open_base_and_strategy(model, strategy)


@cli_errors
def export_cmd(
    shape: Annotated[str, typer.Option(help="Shape key, e.g. L12-a0.75-f0.875.")],
    out: Annotated[Path, typer.Option(help="Output directory (must not exist or be empty unless --overwrite).")],
    model: Annotated[Optional[Path], typer.Option(help="Base model directory (HF format).")] = None,
    strategy: Annotated[Optional[Path], typer.Option(help="Stage 1 strategy directory made for that model.")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="AmoebaLLM checkpoint directory (instead of --model/--strategy).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing non-empty output directory.")] = False,
    dtype: Annotated[str, typer.Option(help=f"dtype of the written weights: {', '.join(DTYPES)}.")] = "float32",
    threads: Annotated[int, typer.Option(help="torch intra-op threads.")] = 1,
) -> None:
    """Export one subnet shape as a stock Hugging Face model directory (prints path, sha256, seconds)."""
    import torch

    from core.export.atomic import check_target
    from core.export.writer import export_subnet
    from core.spec import SubnetSpec

    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    torch.set_num_threads(threads)
    spec = SubnetSpec.parse(shape)
    check_target(out, overwrite)
    src = resolve_source(model, strategy, checkpoint)
    res = export_subnet(src.elastic, spec, out, tokenizer_dir=src.tokenizer_dir, source=src.source, dtype=getattr(torch, dtype), overwrite=overwrite)
    typer.echo(f"path: {res.path}")
    typer.echo(f"sha256: {res.sha256}")
    typer.echo(f"seconds: {res.seconds:.2f}")
    console.print(f"{res.spec.key}: {res.architecture}, {res.num_parameters:,} parameters")


def register(app: typer.Typer) -> None:
    """Mount ``amoeba export``."""
    app.command("export")(export_cmd)
