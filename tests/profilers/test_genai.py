"""The ONNX Runtime GenAI flow: pure parts always; a real run where onnxruntime-genai is installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.spec import SubnetSpec
from profilers.base import MeasureSettings
from profilers.plugins.ort.genai import OrtGenAiProfiler, builder_command, pin_threads, write_word_tokenizer
from profilers.source import ModelSource
from profilers.workload import Workload


def test_builder_command_and_thread_pinning(tmp_path: Path) -> None:
    cmd = builder_command(tmp_path / "hf", tmp_path / "out", Workload(1, 8, 4), python="py")
    assert cmd[:3] == ["py", "-m", "onnxruntime_genai.models.builder"] and cmd[cmd.index("-p") + 1] == "fp32" and cmd[-1] == "cpu"
    assert builder_command(tmp_path, tmp_path, Workload(1, 8, 4, "int4"), "cuda")[-3:] == ["int4", "-e", "cuda"]
    with pytest.raises(ConfigError, match="unsupported dtype 'bf16'"):
        builder_command(tmp_path, tmp_path, Workload(1, 8, 4, "bf16"))
    cfg = tmp_path / "genai_config.json"
    cfg.write_text(json.dumps({"model": {"decoder": {"session_options": {"log_id": "x"}}}}))
    pin_threads(cfg, 1)
    assert json.loads(cfg.read_text())["model"]["decoder"]["session_options"] == {"log_id": "x", "intra_op_num_threads": 1, "inter_op_num_threads": 1}


def test_word_tokenizer_covers_the_vocabulary(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    write_word_tokenizer(tmp_path, 50)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(tok) == 50 and tok.encode("t49 t3", add_special_tokens=False) == [49, 3]


@pytest.mark.skipif(not OrtGenAiProfiler.available(), reason="onnxruntime-genai / onnx-ir not installed")
def test_genai_measures_for_real(tiny_base: Path) -> None:
    prof = OrtGenAiProfiler(MeasureSettings(warmup=1, repetitions=2, busy_retries=0))
    row = prof.measure(ModelSource.open(tiny_base), SubnetSpec(2, 0.5, 0.75), Workload(1, 12, 4))
    assert row.shape == "L2-a0.5-f0.75" and row.tpot_ms.median > 0 and row.ttft_ms.repetitions == 2
