"""The generic lazy ``Registry[T]``: names without imports, clear errors, kind checks, caching."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.registry import Registry


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
