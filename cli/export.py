"""``amoeba export``: cut one shape out of a base model + strategy into a standalone HF model directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from cli.common import cli_errors, console
from cli.defaults import CHECKPOINT_HELP

if TYPE_CHECKING:
    from core.elastic.model import ElasticModel

DTYPES = ("float32", "bfloat16", "float16")
FORMATS = ("hf", "gguf")


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
    """The one place that decides what to export from: ``--checkpoint``, ``--model`` + ``--strategy``, else the served checkpoint."""
    if checkpoint is not None:
        if model is not None or strategy is not None:
            raise ValueError("give either --checkpoint or --model/--strategy, not both")
        console.print(f"loading checkpoint {checkpoint} ...")
        return open_checkpoint_source(checkpoint)
    if model is None and strategy is None:
        from cli.defaults import served_checkpoint

        checkpoint = served_checkpoint()
        console.print(f"loading the served checkpoint {checkpoint} ...")
        return open_checkpoint_source(checkpoint)
    if model is None or strategy is None:
        raise ValueError("give --checkpoint, or --model and --strategy (or none of them: the served checkpoint)")
    console.print(f"loading {model} with strategy {strategy} ...")
    return open_base_and_strategy(model, strategy)


@cli_errors
def export_cmd(
    shape: Annotated[str, typer.Option(help="Shape key, e.g. L12-a0.75-f0.875.")],
    out: Annotated[Path, typer.Option(help="Output directory (must not exist or be empty unless --overwrite).")],
    model: Annotated[Optional[Path], typer.Option(help="Base model directory (HF format).")] = None,
    strategy: Annotated[Optional[Path], typer.Option(help="Stage 1 strategy directory made for that model.")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help=f"AmoebaLLM checkpoint directory (instead of --model/--strategy; {CHECKPOINT_HELP}).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing non-empty output directory.")] = False,
    dtype: Annotated[str, typer.Option(help=f"dtype of the written weights: {', '.join(DTYPES)}.")] = "float32",
    threads: Annotated[int, typer.Option(help="torch intra-op threads.")] = 1,
    format: Annotated[str, typer.Option("--format", help="hf: a stock HF directory at --out; gguf: a llama.cpp GGUF file at --out (*.gguf).")] = "hf",
    gguf_dtype: Annotated[str, typer.Option(help="GGUF weights: f32, f16, q8_0 or q4_k (q4_k needs llama-cpp-python).")] = "f16",
    parity_tokens: Annotated[int, typer.Option(help="gguf: compare llama.cpp logits with the HF export on this many tokens (0 = skip; "
                                                    "needs llama-cpp-python).")] = 0,
) -> None:
    """Export one subnet shape as a stock Hugging Face model directory or a GGUF file (prints path, sha256, seconds)."""
    import torch

    from core.atomic import check_target
    from core.export.writer import export_subnet
    from core.spec import SubnetSpec

    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    torch.set_num_threads(threads)
    spec = SubnetSpec.parse(shape)
    if format == "gguf":
        _export_gguf(spec, out, model, strategy, checkpoint, overwrite, gguf_dtype, parity_tokens)
        return
    check_target(out, overwrite)
    src = resolve_source(model, strategy, checkpoint)
    res = export_subnet(src.elastic, spec, out, tokenizer_dir=src.tokenizer_dir, source=src.source, dtype=getattr(torch, dtype), overwrite=overwrite)
    typer.echo(f"path: {res.path}")
    typer.echo(f"sha256: {res.sha256}")
    typer.echo(f"seconds: {res.seconds:.2f}")
    console.print(f"{res.spec.key}: {res.architecture}, {res.num_parameters:,} parameters")


def _export_gguf(spec: Any, out: Path, model: Path | None, strategy: Path | None, checkpoint: Path | None, overwrite: bool,
                 gguf_dtype: str, parity_tokens: int) -> None:
    """``spec`` extracted once (adapters merged, compensation biases kept) and written as GGUF; with ``parity_tokens``
    the same extraction also goes to a temporary HF directory to compare against."""
    import tempfile
    import time

    import torch

    from core.atomic import sha256_file
    from core.export.extract import extract
    from core.export.gguf import GGUF_DTYPES, parity
    from core.export.writer import tokenizer_files, write_gguf_file, write_hf_dir

    if gguf_dtype not in GGUF_DTYPES:
        raise ValueError(f"--gguf-dtype must be one of {', '.join(GGUF_DTYPES)}, got {gguf_dtype!r}")
    if out.suffix != ".gguf":
        raise ValueError(f"--format gguf writes one file: --out must end in .gguf, got {out}")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists (use --overwrite to replace it)")
    t0 = time.perf_counter()
    src = resolve_source(model, strategy, checkpoint)
    ex = extract(src.elastic, spec, source=src.source, dtype=torch.float32)
    g = write_gguf_file(ex, out, gguf_dtype=gguf_dtype, tokenizer_dir=src.tokenizer_dir, name=f"amoeba-{spec.key}")
    if parity_tokens > 0:
        with tempfile.TemporaryDirectory(prefix="amoeba-gguf-") as tmp:
            tok = tokenizer_files(src.tokenizer_dir) if src.tokenizer_dir is not None else []
            hf = write_hf_dir(ex, Path(tmp) / "hf", tokenizer=tok).path
            ids = torch.randint(0, src.elastic.info.vocab_size, (parity_tokens,), generator=torch.Generator().manual_seed(0)).tolist()
            p = parity(hf, out, ids)
            console.print(f"parity vs HF export on {p.tokens} tokens: max |Δlogit| {p.max_abs_diff:.3g} (logit scale {p.logit_scale:.3g}, "
                          f"relative {p.relative:.2%}), argmax agreement {p.argmax_agreement:.0%}", highlight=False)
    typer.echo(f"path: {g.path}")
    typer.echo(f"sha256: {sha256_file(g.path)}")
    typer.echo(f"seconds: {time.perf_counter() - t0:.2f}")
    console.print(f"{spec.key}: GGUF {g.architecture} {gguf_dtype} ({ex.architecture} export), tensor types {g.tensor_types}, "
                  f"{g.dropped_zero_biases} zero biases dropped, tokenizer {g.tokenizer}", highlight=False)


def register(app: typer.Typer) -> None:
    """Mount ``amoeba export``."""
    app.command("export")(export_cmd)
