import json
import subprocess
import sys

import pytest

from core.errors import ConfigError
from profilers.errors import TableError
from profilers.stats import percentile, summarise
from profilers.table import load_table, parse_table, save_table
from profilers.workload import Workload
from tests.factories import profile_table


def test_workload_key_roundtrip_and_dtype_suffix() -> None:
    assert Workload(1, 128, 64).key == "b1-p128-g64"
    assert Workload.parse("b4-p512-g128-fp16") == Workload(4, 512, 128, "fp16")
    assert Workload.parse("b1-p128-g64-fp32").key == "b1-p128-g64"
    assert Workload.parse(" b2-p8-g4-q4f16_1 ").key == "b2-p8-g4-q4f16_1"
    assert Workload(1, 10, 5).context_len == 15


@pytest.mark.parametrize("bad", ["b0-p128-g64", "b1-p128-g1", "b1-p0-g64", "1-128-64", "b1-p128-g64-FP16", "b1-p128"])
def test_workload_rejects_bad_keys(bad: str) -> None:
    with pytest.raises(ConfigError):
        Workload.parse(bad)


def test_stats_match_numpy_definitions() -> None:
    import numpy as np

    xs = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0]
    s = summarise(xs)
    assert s.median == pytest.approx(float(np.median(xs)))
    assert s.p90 == pytest.approx(float(np.percentile(xs, 90)))
    assert s.std == pytest.approx(float(np.std(xs)))
    assert s.repetitions == 6 and percentile([7.0], 90) == 7.0


def test_table_roundtrip_and_content_hash_ignores_formatting(tmp_path) -> None:
    t = parse_table(profile_table())
    p = tmp_path / "t.json"
    save_table(t, p)
    t2 = load_table(p)
    assert t2 == t and t2.content_sha256() == t.content_sha256()
    compact = json.dumps(profile_table(), separators=(",", ":"))
    assert parse_table(compact).content_sha256() == t.content_sha256()
    changed = profile_table()
    changed["rows"][0]["ttft_ms"]["median"] = 2.1
    assert parse_table(changed).content_sha256() != t.content_sha256()
    assert not list(tmp_path.glob(".*tmp"))


def test_shape_and_workload_are_canonicalised() -> None:
    d = profile_table(workload="b1-p16-g8-fp32")
    d["rows"][0]["shape"] = "L4-a1.0-f1.0"
    t = parse_table(d)
    assert t.workload == "b1-p16-g8" and t.rows[0].shape == "L4-a1-f1"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["rows"][1]["ttft_ms"].update(median=-1), "rows.1.ttft_ms.median"),
        (lambda d: d["rows"][0].update(shape="L4-x1-f1"), "rows.0.shape"),
        (lambda d: d["rows"][0].update(num_layers=3), "rows.0"),
        (lambda d: d.update(workload="b1-p16"), "workload"),
        (lambda d: d["device"].pop("cpu_model"), "device.cpu_model"),
        (lambda d: d["rows"].append(dict(d["rows"][0])), "duplicate shape"),
        (lambda d: d["rows"][0].update(kv_groups=5), "rows.0.kv_groups"),
        (lambda d: d.update(rows=[]), "rows"),
        (lambda d: d["rows"][0].update(extra_field=1), "rows.0.extra_field"),
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d["rows"][0]["tpot_ms"].update(p90=1.0), "below median"),
    ],
)
def test_invalid_tables_name_the_field(edit, field: str) -> None:
    d = profile_table()
    edit(d)
    with pytest.raises(TableError, match=field.replace(".", r"\.")):
        parse_table(d)


def test_not_json_and_missing_file(tmp_path) -> None:
    with pytest.raises(TableError, match="not JSON"):
        parse_table(b"{nope")
    with pytest.raises(FileNotFoundError):
        load_table(tmp_path / "missing.json")


def test_table_model_imports_without_torch() -> None:
    code = "import sys, profilers.table, profilers.workload; assert 'torch' not in sys.modules, 'torch imported'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["rows"][0].update(ttft_ms={"median": float("inf"), "p90": float("inf"), "std": 0.1, "repetitions": 3}), "rows.0.ttft_ms.median"),
        (lambda d: d["rows"][0].update(tpot_ms={"median": 2.0, "p90": 2.5, "std": 0.1, "repetitions": 3, "pass_medians": [2.0, float("nan")]}),
         "rows.0.tpot_ms.pass_medians.1"),
        (lambda d: d["device"].update(load_avg_start=[float("nan"), 0.2, 0.3]), "device.load_avg_start.0"),
        (lambda d: d["device"].update(clocks_mhz={"cpu0": float("inf")}), "device.clocks_mhz.cpu0"),
        (lambda d: d["rows"][0].update(contention=float("inf")), "rows.0.contention"),
        (lambda d: d.update(protocol={"passes": 2, "rounds_per_pass": 1, "warmup": 1, "repetitions": 2, "threads": 1, "busy_tolerance": float("nan")}),
         "protocol.busy_tolerance"),
    ],
)
def test_non_finite_numbers_are_rejected_naming_the_field(edit, field: str) -> None:
    d = profile_table()
    edit(d)
    with pytest.raises(TableError, match=field.replace(".", r"\.") + ": Input should be a finite number"):
        parse_table(d)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["rows"][0].update(ttft_ms={"median": "2.0", "p90": 2.5, "std": 0.1, "repetitions": 3}), "rows.0.ttft_ms.median"),
        (lambda d: d["rows"][0].update(ttft_ms={"median": 2.0, "p90": 2.5, "std": 0.1, "repetitions": 3.0}), "rows.0.ttft_ms.repetitions"),
        (lambda d: d["rows"][0].update(num_layers="4"), "rows.0.num_layers"),
        (lambda d: d["rows"][0].update(busy="yes"), "rows.0.busy"),
        (lambda d: d["rows"][0].update(busy=1), "rows.0.busy"),
        (lambda d: d["device"].update(cpu_count=True), "device.cpu_count"),
        (lambda d: d["device"].update(load_avg_start=["0.1", 0.2, 0.3]), "device.load_avg_start.0"),
        (lambda d: d["engine"].update(version=2.13), "engine.version"),
    ],
)
def test_types_are_strict_no_coercion(edit, field: str) -> None:
    d = profile_table()
    edit(d)
    with pytest.raises(TableError, match=field.replace(".", r"\.")):
        parse_table(d)


def test_strict_table_still_reads_json_arrays_and_ints_for_floats(tmp_path) -> None:
    d = profile_table()
    d["rows"][0]["ttft_ms"] = {"median": 2, "p90": 3, "std": 0, "repetitions": 3, "pass_medians": [2, 2]}
    d["device"]["cpu_affinity"] = [1]
    t = parse_table(json.dumps(d))
    assert t.device.load_avg_start == (0.1, 0.2, 0.3) and t.rows[0].ttft_ms.median == 2.0 and t.device.cpu_affinity == [1]
    save_table(t, tmp_path / "t.json")
    assert load_table(tmp_path / "t.json") == t
