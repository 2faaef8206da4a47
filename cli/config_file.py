"""``--config FILE`` for a command: a YAML or TOML mapping of option names to values; command-line flags win.

The file is read before any other option (an eager option) and becomes Click's ``default_map``, so its values
replace the defaults and go through the same type conversion as flags. Keys are the option names, with ``-`` or
``_`` (``max-steps`` / ``max_steps``); an unknown key or a value of the wrong type is a usage error naming both.
"""

from __future__ import annotations

import functools
import inspect
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])
PARAM = "config_file"


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping in a ``.yaml``/``.yml``/``.toml`` file; ``ValueError`` naming what is wrong."""
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not valid YAML: {e}") from None
    elif path.suffix == ".toml":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path} is not valid TOML: {e}") from None
    else:
        raise ValueError(f"{path}: a config file ends in .yaml, .yml or .toml")
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path} must hold a mapping of option names to values, got {type(doc).__name__}")
    return {str(k).replace("-", "_"): v for k, v in doc.items()}


def _load(ctx: typer.Context, param: typer.CallbackParam, value: Optional[Path]) -> Optional[Path]:
    """Eager callback: check every key and value of the file, then make it the command's ``default_map``."""
    if value is None:
        return None
    try:
        doc = read_config_file(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    params = {p.name: p for p in ctx.command.params if p.name and p.name != PARAM and p.expose_value}
    for key, raw in doc.items():
        if key not in params:
            known = ", ".join(sorted(n.replace("_", "-") for n in params))
            raise typer.BadParameter(f"{value}: unknown key {key!r} (known: {known})")
        try:
            params[key].process_value(ctx, raw)  # the conversion a flag gets (and its checks)
        except typer.BadParameter as e:
            raise typer.BadParameter(f"{value}: bad value for {key!r}: {e.message}") from None
    ctx.default_map = {**(ctx.default_map or {}), **doc}
    return value


def with_config_file(fn: F) -> F:
    """Give a command ``--config FILE`` (YAML or TOML); values from the file stand in for defaults, flags win."""
    sig = inspect.signature(fn, eval_str=True)
    opt = inspect.Parameter(PARAM, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Optional[Path], typer.Option("--config", is_eager=True, callback=_load, metavar="FILE",
                                     help="YAML or TOML file of option values (keys: the option names); command-line flags override it.")])

    @functools.wraps(fn)
    def wrapper(**kw: Any) -> Any:
        kw.pop(PARAM, None)
        return fn(**kw)

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values()]
    wrapper.__signature__ = sig.replace(parameters=[*params, opt])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {}
    return wrapper  # type: ignore[return-value]
