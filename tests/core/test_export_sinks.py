"""The sinks of one extraction: an HF directory, a deterministic tar of the same files, a GGUF of the same tensors."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from core.elastic.model import ElasticModel
from core.export.manifest import verify_export
from core.export.writer import export_subnet, export_subnet_gguf, export_subnet_tar
from core.model.loader import ModelInfo
from core.strategy.schema import naive_strategy
from tests.conftest import make_tiny

SHAPE = "L3-a0.5-f0.5"


def _elastic() -> ElasticModel:
    model = make_tiny("llama", heads=4, kv=2)
    st = naive_strategy(ModelInfo.from_config(model.config), "sha", min_layers=2, widths=(1.0, 0.5))
    st.biases = {f"ffn.0.5.{i}": torch.randn(64, generator=torch.Generator().manual_seed(i)) * 0.1 for i in range(4)}
    return ElasticModel(model, st)


def test_tar_holds_the_directory_export(tmp_path: Path) -> None:
    em = _elastic()
    d = export_subnet(em, SHAPE, tmp_path / "dir")
    t = export_subnet_tar(em, SHAPE, tmp_path / "a.tar", "sub")
    assert t.path == tmp_path / "a.tar" and t.archive_bytes == t.path.stat().st_size and t.num_parameters == d.num_parameters
    with tarfile.open(t.path) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "x", filter="data")
    assert names == sorted(names) and {n.removeprefix("sub/") for n in names} == {p.name for p in d.path.iterdir()}
    assert verify_export(tmp_path / "x" / "sub")
    torch.testing.assert_close(load_file(str(tmp_path / "x" / "sub" / "model.safetensors")), load_file(str(d.path / "model.safetensors")))
    assert not list(tmp_path.glob(".*.tmp"))


def test_gguf_of_the_extracted_tensors_equals_the_gguf_of_the_directory(tmp_path: Path) -> None:
    import gguf

    from core.export.gguf import write_gguf

    em = _elastic()
    hf = export_subnet(em, SHAPE, tmp_path / "hf").path
    via_dir = write_gguf(hf, tmp_path / "dir.gguf", dtype="f32", name="x")
    direct = export_subnet_gguf(em, SHAPE, tmp_path / "direct.gguf", gguf_dtype="f32", name="x")
    assert (direct.architecture, direct.tensor_types, direct.dropped_zero_biases) == (via_dir.architecture, via_dir.tensor_types, via_dir.dropped_zero_biases)
    a, b = gguf.GGUFReader(str(via_dir.path)), gguf.GGUFReader(str(direct.path))
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
    for x, y in zip(a.tensors, b.tensors, strict=True):
        np.testing.assert_array_equal(np.asarray(x.data), np.asarray(y.data))
