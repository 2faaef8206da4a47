"""The generic lazy ``Registry[T]``: names without imports, clear errors, kind checks, caching."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.registry import Registry, subclass_of


def test_names_import_nothing_and_load_imports_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "amoeba_fake_plugin.py").write_text("class Plugin:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[type] = Registry("codec", {"fake": "amoeba_fake_plugin:Plugin", "fractions": "fractions:Fraction"}, lambda o: isinstance(o, type))
    assert reg.names() == ["fake", "fractions"] and "fake" in reg and len(reg) == 2 and list(reg) == ["fake", "fractions"]
    assert "amoeba_fake_plugin" not in sys.modules
    cls = reg.load("fake")
    assert cls.__name__ == "Plugin" and reg.load("fake") is cls
    monkeypatch.delitem(sys.modules, "amoeba_fake_plugin")


def test_unknown_name_lists_the_known_ones() -> None:
    reg: Registry[object] = Registry("engine", {"torch": "json:loads", "onnxruntime": "json:dumps"})
    with pytest.raises(ConfigError, match=r"unknown engine 'tensorflow'; known: torch, onnxruntime"):
        reg.load("tensorflow")


def test_bad_targets_and_wrong_kinds_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="target 'json.loads' is not 'module:attr'"):
        Registry("metric", {"x": "json.loads"})
    reg: Registry[type] = Registry("searcher", {"missing": "json:NoSuchThing", "fn": "json:loads"}, lambda o: isinstance(o, type))
    with pytest.raises(ConfigError, match="searcher 'missing' .* cannot be loaded"):
        reg.load("missing")
    with pytest.raises(ConfigError, match="searcher 'fn' \\(json:loads\\) is not a valid searcher"):
        reg.load("fn")


def test_register_adds_and_refuses_duplicates() -> None:
    reg: Registry[object] = Registry("cache", {"memory": "json:loads"})
    reg.register("json", "json:dumps")
    assert reg.names() == ["memory", "json"]
    with pytest.raises(ConfigError, match="cache 'json' is already registered"):
        reg.register("json", "json:loads")


def test_subclass_of_takes_a_class_or_a_lazy_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one kind check of the class families; a ``"module:attr"`` base is imported at the first check only."""
    (tmp_path / "amoeba_fake_base.py").write_text("class Base:\n    pass\n\nclass Member(Base):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    lazy = subclass_of("amoeba_fake_base:Base")
    assert "amoeba_fake_base" not in sys.modules
    import amoeba_fake_base as m

    assert lazy(m.Member) and not lazy(int) and not lazy(m.Member())
    assert subclass_of(m.Base)(m.Member) and not subclass_of(m.Base)(str)
    reg: Registry[type] = Registry("codec", {"ok": "amoeba_fake_base:Member", "bad": "fractions:Fraction"}, lazy)
    assert reg.load("ok") is m.Member
    with pytest.raises(ConfigError, match="codec 'bad' .* is not a valid codec"):
        reg.load("bad")
    monkeypatch.delitem(sys.modules, "amoeba_fake_base")
