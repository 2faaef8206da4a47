"""Typer options generated from a typed config dataclass, so that every default lives in the dataclass only.

``@config_options(FinetuneConfig, HELP, rename={"adapter.num_experts": "experts"})`` adds one ``--option`` per
scalar field (nested dataclass fields such as ``adapter.rank`` flattened to ``--rank``) to the command, with the
field's default and type; the command receives them as one ``{"field.path": value}`` mapping in ``config``, to be
built with ``build_config``. The config module must not import torch (``amoeba X --help`` stays light).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import operator
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import typer

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
SCALARS = (bool, int, float, str, Path)


@dataclasses.dataclass(frozen=True)
class ConfigField:
    """One scalar field of a (possibly nested) config dataclass: ``path`` such as ``adapter.num_experts``."""

    path: str
    type: Any
    default: Any


def _scalar(tp: Any) -> Any:
    """The command-line type of a field type (``Literal`` → ``str``), or ``None`` when it is not a scalar."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return type(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = _scalar(args[0]) if len(args) == 1 else None
        return None if inner is None else Union[inner, None]  # noqa: UP007
    return tp if tp in SCALARS else None


def config_fields(cls: type, prefix: str = "", instance: Any = None) -> list[ConfigField]:
    """Every scalar field with a plain default (or ``instance``'s value), nested dataclasses flattened.

    A nested dataclass field counts when it defaults to an instance (its values are the defaults) or to the class
    itself as ``default_factory`` (the class's field defaults; the factory is not called: it may import torch).
    """
    hints = typing.get_type_hints(cls)
    out: list[ConfigField] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        default = getattr(instance, f.name) if instance is not None else f.default
        if dataclasses.is_dataclass(tp) and isinstance(default, tp):  # type: ignore[arg-type]
            out += config_fields(tp, f"{prefix}{f.name}.", default)  # type: ignore[arg-type]
        elif dataclasses.is_dataclass(tp) and f.default_factory is tp and instance is None:
            out += config_fields(tp, f"{prefix}{f.name}.")  # type: ignore[arg-type]
        elif (st := _scalar(tp)) is not None and default is not dataclasses.MISSING:
            out.append(ConfigField(prefix + f.name, st, default))
    return out


def config_options(cls: type, help: Mapping[str, str], *, rename: Mapping[str, str] | None = None, defaults: Any = None) -> Callable[[F], F]:
    """Add an option for every field of ``cls`` named in ``help`` (field path → help text) to a command.

    The option is ``--<name>`` with ``name`` the last path part (or ``rename[path]``); its default is the field's,
    or that of the ``defaults`` instance when given (a command's own preset). The command gets the values as
    ``config: dict[path, value]``. A ``help`` key that is no scalar field of ``cls`` is a programming error.
    """
    rename = dict(rename or {})
    fields_ = [f for f in config_fields(cls) if f.path in help]
    unknown = sorted(set(help) - {f.path for f in fields_})
    if unknown:
        raise TypeError(f"{cls.__name__} has no scalar fields {unknown}")
    names = {f.path: rename.get(f.path, f.path.rsplit(".", 1)[-1]) for f in fields_}
    if defaults is not None:
        fields_ = [dataclasses.replace(f, default=operator.attrgetter(f.path)(defaults)) for f in fields_]

    def deco(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "config"]
        clash = {n for n in names.values()} & {p.name for p in own}
        if clash:
            raise TypeError(f"{fn.__name__}: options {sorted(clash)} are both hand-written and generated from {cls.__name__}")
        gen = [inspect.Parameter(names[f.path], inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                 annotation=Annotated[f.type, typer.Option(help=help[f.path])]) for f in fields_]

        @functools.wraps(fn)
        def wrapper(**kw: Any) -> Any:
            config = {path: kw.pop(name) for path, name in names.items()}
            return fn(**kw, config=config)

        wrapper.__signature__ = sig.replace(parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + gen)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {}
        return wrapper  # type: ignore[return-value]

    return deco


def build_config(cls: type[T], values: Mapping[str, Any]) -> T:
    """``cls`` from ``{"field.path": value}`` (nested dataclasses built from their own keys); the dataclass validates."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            sub = {k[len(f.name) + 1:]: v for k, v in values.items() if k.startswith(f.name + ".")}
            if sub:
                kwargs[f.name] = build_config(tp, sub)  # type: ignore[arg-type]
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)
