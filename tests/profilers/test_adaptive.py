"""Adaptive profiling: initial design, uncertainty-driven batches, stop rules, replay on a grid, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError
from core.spec import SubnetSpec
from profilers.adaptive import AdaptiveOptions, initial_design, pick_batch, replay
from profilers.predictor.model import LatencyPredictor, kept_dims
from profilers.table import parse_table
from tests.profilers.test_predictor import MODEL, WL, physical_law, synthetic_table


def grid_table(noise: float = 0.01) -> object:
    d = synthetic_table(physical_law, depths=range(2, 13), noise=noise)
    for r in d["rows"]:
        r["measure_s"] = 0.5 + 0.1 * r["num_layers"]
    return parse_table(d)


def test_initial_design_has_the_corners_and_spreads_out() -> None:
    t = grid_table()
    specs = [r.spec for r in t.rows]
    dims = [r.dims() for r in t.rows]
    idx = initial_design(MODEL, specs, dims, 10)
    keys = {specs[i].key for i in idx}
    assert {"L12-a1-f1", "L2-a0.625-f0.625", "L12-a0.625-f0.625", "L2-a1-f1"} <= keys and len(idx) == 10 == len(set(idx))


def test_pick_batch_spreads_picks_apart() -> None:
    P = np.array([[0.0], [0.01], [0.02], [1.0]])
    assert pick_batch(np.array([1.0, 0.99, 0.98, 0.5]), P, 2) == [0, 3]


def test_replay_reaches_the_target_with_far_fewer_shapes_and_generalises() -> None:
    t = grid_table()
    res = replay(t.rows, MODEL, WL, AdaptiveOptions(budget_s=1e6, target_mape_pct=3.0, target_within_10pct=0.95))
    assert res.met_target and len(res.rows) < len(t.rows) / 3
    assert res.steps[-1].cv["tpot_ms"]["mape_pct"] <= 3.0 and res.steps[0].shapes == 10
    assert res.steps[-1].elapsed_s == pytest.approx(sum(r.measure_s for r in res.rows))
    sub = parse_table(t.model_copy(update={"rows": res.rows}).model_dump(mode="json"))
    pred = LatencyPredictor.fit(sub)
    unmeasured = [r for r in t.rows if r.shape not in {x.shape for x in res.rows}]
    err = [abs(pred.estimate(r.spec).tpot_ms - r.tpot_ms.median) / r.tpot_ms.median for r in unmeasured]
    assert np.mean(err) < 0.03 and np.mean(np.array(err) <= 0.10) >= 0.95  # true held-out: the shapes never measured


def test_budget_and_max_shapes_stop_early() -> None:
    t = grid_table(noise=0.15)  # too noisy for the target: only the budget stops it
    res = replay(t.rows, MODEL, WL, AdaptiveOptions(budget_s=20.0, target_mape_pct=1.0))
    assert res.stop_reason == "budget spent" and res.steps[-1].elapsed_s <= 20.0 + 4 * 1.7
    res = replay(t.rows, MODEL, WL, AdaptiveOptions(budget_s=1e6, target_mape_pct=1.0, max_shapes=14))
    assert res.stop_reason == "max shapes reached" and len(res.rows) == 14
    with pytest.raises(ConfigError, match="initial >= 6"):
        AdaptiveOptions(budget_s=10, initial=3)
    assert kept_dims(MODEL, SubnetSpec(4)).q_heads == 16


def test_cli_adaptive_profile_and_fit(tiny_base: Path, tmp_path: Path) -> None:
    from tests.factories import run_cli

    out = tmp_path / "t.json"
    r = run_cli("profile", "--engine", "torch", "--workload", "b1-p8-g3", "--model", str(tiny_base), "--out", str(out),
                                         "--shapes", "adaptive", "--budget-min", "0.2", "--repetitions", "1", "--warmup", "0", "--rounds", "1",
                                         "--passes", "2", "--widths", "1,0.75,0.5")
    assert r.exit_code == 0, r.output
    assert "adaptive:" in r.output and "noise floor" in r.output
    t = json.loads(out.read_text())
    assert 10 <= len(t["rows"]) <= 24 and t["protocol"]["order"].startswith("adaptive") and t["noise_floor"]["tpot_ms"]["n"] == len(t["rows"])
    assert t["device"]["cpu_affinity"] and all(row["q_heads"] for row in t["rows"])
    f = run_cli("profile", "fit", str(out), "--out", str(tmp_path / "p.json"), "--include-busy")  # CI may be busy
    assert f.exit_code == 0 and "noise floor" in f.output and "CV fits" in f.output


def test_uncertain_shapes_are_added_until_a_size_effect_is_learnt() -> None:
    from tests.profilers.test_predictor import physical_law as law

    def lumpy(d):  # one MLP size 30 % slower: the initial design cannot see it, the added batches must
        return law(d) * (1.3 if d.ffn_channels == 672 else 1.0)

    d = synthetic_table(lumpy, depths=range(2, 13), noise=0.01)
    for r in d["rows"]:
        r["measure_s"] = 1.0
    t = parse_table(d)
    res = replay(t.rows, MODEL, WL, AdaptiveOptions(budget_s=1e6, target_mape_pct=3.0))
    assert res.met_target and len(res.steps) >= 2 and res.steps[0].cv["tpot_ms"]["mape_pct"] > 3.0
    assert len(res.rows) < len(t.rows) / 4 and any("f0.875" in k for s in res.steps[1:] for k in s.added)


def test_first_start_profile_covers_the_space_adaptively_with_a_floor(tiny_base: Path) -> None:
    from core.spec import ShapeSpace
    from profilers.agent import first_start_profile
    from profilers.base import MeasureSettings
    from profilers.registry import get_profiler
    from profilers.source import ModelSource
    from profilers.workload import Workload

    space = ShapeSpace(4, 1, (1.0, 0.75, 0.5), (1.0, 0.5))
    prof = get_profiler("torch", MeasureSettings(warmup=0, repetitions=1, busy_retries=0))
    t = first_start_profile(prof, ModelSource.open(tiny_base), space, Workload(1, 8, 3), budget_s=30.0)
    assert 10 <= len(t.rows) <= len(space) and all(r.spec in space for r in t.rows)
    assert t.noise_floor is not None and t.protocol is not None and t.protocol.passes == 2 and t.command.startswith("amoeba serve")
