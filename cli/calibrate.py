"""``amoeba calibrate``: Stage 1 (depth DP + width importance) on a base model → a strategy directory."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cli.common import cli_errors, console, progress
from cli.config_file import with_config_file
from cli.defaults import CHECKPOINT_HELP
from cli.options import build_config, config_options
from core.strategy.config import ALLOCATIONS, CalibrationConfig, parse_bias_modules

#: ``CalibrationConfig`` field → help of its option; the defaults are the config's (a field not listed has no option)
HELP = {
    "keep_last": "Top layers that are never removed.",
    "attn_unit": "Attention unit: kv_group (whole KV groups) or q_head (query heads inside every KV group).",
    "allocation": f"Width allocation: {' or '.join(ALLOCATIONS)}.",
    "window": "Tokens per calibration window.",
    "max_tokens": "Use at most this many calibration tokens (0 = all).",
    "batch_size": "Windows per forward pass.",
}
BIAS = ",".join(CalibrationConfig.bias_modules)  # the config's default, as --bias text


@cli_errors
@with_config_file
@config_options(CalibrationConfig, HELP)
def calibrate_cmd(
    out: Annotated[Path, typer.Option(help="Strategy directory to write (replaced atomically).")],
    model: Annotated[Optional[Path], typer.Option(help=f"Base model directory (Hugging Face format, with its tokenizer); {CHECKPOINT_HELP}'s base.")] = None,
    calib_text: Annotated[Optional[Path], typer.Option(help="Calibration text file (default: <model>/calibration.txt).")] = None,
    min_layers: Annotated[Optional[int], typer.Option(help="Smallest depth of the shape space (default: half the layers).")] = None,
    widths: Annotated[Optional[str], typer.Option(help="MLP width ladder (also attention without --attn-widths); default 1,7/8,3/4,5/8 snapped.")] = None,
    attn_widths: Annotated[Optional[str], typer.Option(help="Attention width ladder (default: what the unit count allows).")] = None,
    depth_from: Annotated[Optional[Path], typer.Option(help="Reuse this strategy's kept layers instead of the DP.")] = None,
    bias: Annotated[str, typer.Option(help="Compensation bias modules: attn,ffn | attn | ffn | none (bench/results/bias_compensation.json).")] = BIAS,
    threads: Annotated[int, typer.Option(help="torch intra-op threads.")] = 1,
    config: dict[str, Any] | None = None,
) -> None:
    """Select the kept layers of every depth and the kept heads/channels of every width (Stage 1)."""
    import torch
    from transformers import AutoTokenizer

    from core.data.tokens import tokenize_file
    from core.errors import ConfigError, DataMissingError
    from core.model.loader import load_base_model, read_config, weights_sha256
    from core.spec import format_width, parse_widths
    from core.strategy.calibrate import CalibrationProgress, calibrate
    from core.strategy.schema import Strategy

    if model is None:
        from cli.defaults import base_of, served_checkpoint

        model = base_of(served_checkpoint())
    raw = read_config(model)
    if out.resolve() == model.resolve():
        raise ConfigError("--out must not be the model directory")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "strategy.json").is_file())):
        raise ConfigError(f"--out {out} exists and is not a strategy directory; refusing to replace it")
    calib = calib_text if calib_text is not None else model / "calibration.txt"
    if not calib.is_file():
        if calib_text is None:
            raise DataMissingError(f"{model} has no calibration.txt; pass --calib-text FILE")
        raise DataMissingError(f"calibration text not found: {calib}")
    n_layers = int(raw.get("num_hidden_layers", 0))
    values = dict(config or {})
    values["max_tokens"] = values["max_tokens"] or None  # 0 = the whole calibration text
    values["min_layers"] = min_layers if min_layers is not None else max(1, values["keep_last"], n_layers // 2)
    values["bias_modules"] = parse_bias_modules(bias)
    if widths:
        values["widths"] = parse_widths(widths)
    if attn_widths:
        values["attn_widths"] = parse_widths(attn_widths)
    cfg = build_config(CalibrationConfig, values)
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    hf, info = load_base_model(model)
    cfg.check_model(info)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model))
    except (OSError, ValueError, TypeError) as e:
        raise DataMissingError(f"{model} has no usable tokenizer ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    with tempfile.TemporaryDirectory(prefix="amoeba-calib-") as tmp:
        tokens = tokenize_file(calib, tokenizer, cache_dir=Path(tmp))
    with calib.open("rb") as f:
        calib_sha = hashlib.file_digest(f, "sha256").hexdigest()
    sha = weights_sha256(model)
    reused = Strategy.load(depth_from) if depth_from is not None else None
    with progress() as bar:
        tasks = {"stats": bar.add_task("channel statistics", total=None, info=""), "depth": bar.add_task("depth DP", total=None, info="")}

        def on_progress(p: CalibrationProgress) -> None:
            bar.update(tasks[p.stage], completed=p.done, total=p.total)

        strategy = calibrate(hf, info, sha, tokens, cfg, calib_sha256=calib_sha, on_progress=on_progress, reuse_depth=reused)
    strategy.save(out)
    m = strategy.meta
    ppl = ", ".join(f"L{d}: {p:.2f}" for d, p in m["dp_perplexity"].items() if p is not None)
    lf = m["layer_forwards"]
    sp = strategy.space
    console.print(f"calibration: {m['tokens_used']:,} tokens in {m['num_windows']} windows; perplexity by depth: {ppl}")
    console.print(f"layer-forwards {lf['cached']:,} with the prefix cache ({lf['uncached']:,} without); {m['wall_s']['total']:.1f} s")
    ladder = ", ".join(format_width(w) for w in sp.attn_ladder)
    mlp = ", ".join(format_width(w) for w in sp.widths)
    console.print(f"ladders: attention ({strategy.attn_unit}) [{ladder}], MLP [{mlp}]; kept counts {m['kept_counts']}")
    console.print(f"saved strategy to {out}")


def register(app: typer.Typer) -> None:
    """Mount ``amoeba calibrate``."""
    app.command("calibrate")(calibrate_cmd)
