"""Smoke tests of the paper scripts (bench/paper) in ``--tiny`` mode on a tiny model, the committed eval fixtures
and an untrained one-for-all checkpoint."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from core.data.paths import FIXTURES_DIR, REPO_ROOT
from core.errors import DataMissingError
from tests.conftest import make_tiny

DATA = FIXTURES_DIR / "eval" / "data"


def _script(name: str) -> Any:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module(f"bench.paper.{name}")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny 4-layer Llama with the fixture tokenizer, a corpus, and an (untrained) Amoeba checkpoint."""
    from transformers import AutoTokenizer

    from core.checkpoint import save_checkpoint
    from core.finetune.config import FinetuneConfig
    from core.model.loader import load_base_model, weights_sha256
    from core.smol.assemble import build_trainee
    from core.smol.config import SmolConfig
    from core.strategy.calibrate import CalibrationConfig, calibrate

    root = tmp_path_factory.mktemp("paper")
    tok = AutoTokenizer.from_pretrained(str(FIXTURES_DIR / "eval" / "tokenizer"))
    model = root / "model"
    make_tiny(vocab=len(tok), layers=4).save_pretrained(str(model))
    tok.save_pretrained(str(model))
    corpus = root / "corpus"
    corpus.mkdir()
    text = (DATA / "wikitext2" / "wiki.test.raw").read_text()
    for part in ("train", "calibration", "validation"):
        (corpus / f"{part}.txt").write_text(text)
    torch.set_num_threads(1)
    hf, info = load_base_model(model)
    st = calibrate(hf, info, weights_sha256(model), tok(text)["input_ids"], CalibrationConfig(min_layers=2, widths=(1, 0.75, 0.5), window=16, num_windows=8))
    cfg = FinetuneConfig(adapter=SmolConfig(num_experts=2, rank=2, top_k=1), max_steps=3, batch_size=2, seq_len=16)
    save_checkpoint(root / "ckpt", build_trainee(model, st, cfg.adapter), model, cfg.to_dict(), step=3, tokens_seen=96)
    return {"root": root, "model": model, "corpus": corpus, "ckpt": root / "ckpt"}


def _args(env: dict[str, Path], out: str, *extra: str) -> list[str]:
    return ["--tiny", "--model", str(env["model"]), "--corpus-dir", str(env["corpus"]), "--data-dir", str(DATA),
            "--work-dir", str(env["root"] / "work"), "--out", str(env["root"] / out), *extra]


def _check_record(doc: dict[str, Any], script: str) -> None:
    assert doc["command"].startswith(f"python bench/paper/{script} --tiny")
    assert doc["wall_s"] >= 0 and len(doc["load_avg_before"]) == 3 and len(doc["load_avg_after"]) == 3


def test_table3(env: dict[str, Path]) -> None:
    pytest.importorskip("matplotlib")
    doc = _script("table3").main(_args(env, "t3.json", "--depths", "3,2"))
    assert json.loads((env["root"] / "t3.json").read_text())["table"] == json.loads(json.dumps(doc["table"]))
    assert (env["root"] / "t3.png").stat().st_size > 1000
    _check_record(doc, "table3.py")
    assert set(doc["methods"]) == {"dp", "angular", "ppl-block", "taylor-block", "drop-last"}
    assert len(doc["table"]) == 5 * 2
    dp = doc["methods"]["dp"]
    for d in ("3", "2"):  # the table's calibration perplexity is the DP's own objective on the same windows
        assert dp["depths"][d]["calibration_ppl"] == pytest.approx(dp["meta"]["dp_perplexity"][d], rel=1e-4)
        assert len(dp["depths"][d]["kept"]) == int(d) and 3 in dp["depths"][d]["kept"]  # keep_last = 1
    assert doc["methods"]["drop-last"]["depths"]["2"]["kept"] == [0, 1]
    md = _script("render").table3(doc)
    assert md.count("| method | removed layers |") == 2 and "**2 of 4 layers kept**" in md and "| drop-last" in md and "Full model (4 layers)" in md
    for r in doc["methods"].values():
        for row in r["depths"].values():
            if row["same_subnet_as"]:
                twin = doc["methods"][row["same_subnet_as"]]["depths"]
                assert any(t["fingerprint"] == row["fingerprint"] and t["wikitext2"] == row["wikitext2"] for t in twin.values())


def test_table1_rows_choice_and_resume(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    table1 = _script("table1")
    args = _args(env, "t1.json", "--checkpoint", str(env["ckpt"]), "--methods", "flap,ppl-block", "--targets", "0.8,0.5", "--min-layers", "2")
    doc = table1.main(args)
    _check_record(doc, "table1.py")
    keys = {r["key"] for r in doc["rows"]}
    assert keys == {f"{m}|{t}|{s}" for m, stages in (("amoeba", ("one-for-all", "lora")), ("flap", ("pruned", "lora")), ("ppl-block", ("pruned", "lora")))
                    for t in (0.8, 0.5) for s in stages}
    rows = {r["key"]: r for r in doc["rows"]}
    assert doc["one_for_all"] == {"kind": "amoeba", "steps": 3, "tokens_seen": 96, "shapes_per_step": 4}
    assert doc["settings"]["lora"]["steps"] == 2 and rows["flap|0.8|lora"]["finetune"]["tokens_seen"] == 2 * 2 * 16
    amoeba = rows["amoeba|0.5|one-for-all"]
    assert amoeba["shape"] == rows["amoeba|0.5|lora"]["shape"] == amoeba["choice"]["spec"]
    best = min(amoeba["choice"]["scores"].values())
    assert amoeba["choice"]["scores"][amoeba["shape"]] == best
    assert all(abs(f - 0.5) <= 0.02 + 1e-9 for f in [amoeba["fraction"]]) or amoeba["choice"]["rule"].startswith("none within")
    assert rows["ppl-block|0.5|pruned"]["shape"] == "L2-a1-f1" and rows["flap|0.5|pruned"]["shape"] == "L4-a0.5-f0.5"
    assert rows["flap|0.5|pruned"]["compensation_bias"] and not rows["ppl-block|0.5|pruned"]["compensation_bias"]
    assert rows["flap|0.5|pruned"]["bias_modules"] == ["attn", "ffn"] and rows["amoeba|0.5|lora"]["bias_modules"] == ["attn"]
    ev = rows["flap|0.8|lora"]["eval"]
    assert set(ev["tasks"]) == {"piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "boolq", "openbookqa"}
    assert math.isfinite(ev["wikitext2"]["ppl"]) and ev["tasks"]["piqa"]["n"] == 3
    assert {r["label"] for r in doc["table"]} >= {"AmoebaLLM", "AmoebaLLM†", "flap (no FT)", "flap + LoRA"}
    md = _script("render").table1(doc)
    assert md.count("| method | shape |") == 2 and "| AmoebaLLM† |" in md and "| flap + LoRA |" in md and "Mean chance level" in md

    import core.baselines.shape_lora as shape_lora

    def no_training(*a: Any, **k: Any) -> Any:
        raise AssertionError("a finished row was trained again")

    monkeypatch.setattr(shape_lora, "finetune_shape", no_training)
    again = table1.main(args)  # same settings: every row is taken from the JSON
    assert [r["eval"] for r in again["rows"]] == [r["eval"] for r in json.loads(json.dumps(doc["rows"]))]


def test_figure3_points_latency_and_overlay(env: dict[str, Path]) -> None:
    pytest.importorskip("matplotlib")
    t1 = env["root"] / "t1-fig.json"
    _script("table1").main(_args(env, "t1-fig.json", "--checkpoint", str(env["ckpt"]), "--methods", "magnitude", "--targets", "0.5", "--min-layers", "2"))
    doc = _script("figure3").main(_args(env, "f3.json", "--checkpoint", str(env["ckpt"]), "--methods", "angular,flap", "--depths", "4,3", "--table1", str(t1)))
    _check_record(doc, "figure3.py")
    assert (env["root"] / "f3.png").stat().st_size > 1000
    pts = doc["points"]
    by = {(p["label"], p["shape"]): p for p in pts}
    assert {k for k in by if k[0] == "AmoebaLLM"} == {("AmoebaLLM", s) for s in ("L4-a1-f1", "L4-a0.75-f0.75", "L4-a0.5-f0.5", "L3-a1-f1",
                                                                               "L3-a0.75-f0.75", "L3-a0.5-f0.5", "L2-a1-f1", "L2-a0.75-f0.75", "L2-a0.5-f0.5")}
    assert {k[1] for k in by if k[0] == "angular (no FT)"} == {"L4-a1-f1", "L3-a1-f1"}
    assert {k[1] for k in by if k[0] == "flap (no FT)"} == {"L4-a1-f1", "L4-a0.75-f0.75", "L4-a0.5-f0.5"}
    full = [p for p in pts if p["shape"] == "L4-a1-f1" and p["label"] != "AmoebaLLM"]
    assert len({p["wikitext2_ppl"] for p in full}) == 1 and len({p["latency"]["arch"] for p in full}) == 1
    assert by[("flap (no FT)", "L4-a0.5-f0.5")]["latency"]["arch"] == "L4-a0.5-f0.5+attn_bias+ffn_bias"
    assert by[("AmoebaLLM", "L4-a0.5-f0.5")]["latency"]["arch"] == "L4-a0.5-f0.5+attn_bias"  # the strategy compensates attention only
    tuned = [p for p in pts if p.get("finetuned")]
    assert {p["label"] for p in tuned} == {"AmoebaLLM†", "magnitude + LoRA"}
    assert by[("magnitude + LoRA", "L4-a0.5-f0.5")]["latency"]["arch"] == "L4-a0.5-f0.5"
    for p in pts:
        lat = p["latency"]
        assert lat["tpot_ms"] > 0 and lat["e2e_ms"] == pytest.approx(lat["ttft_ms"] + 3 * lat["tpot_ms"])
    assert doc["latency"]["workload"] == "b1-p8-g4" and doc["architectures_measured"] == len({p["latency"]["arch"] for p in pts})
    (env["root"] / "f3.png").unlink()
    re = _script("figure3").main(_args(env, "f3.json", "--remeasure", "2"))  # latency only, side by side; quality untouched
    assert [(p["label"], p["shape"], p["wikitext2_ppl"], p["latency"]["arch"]) for p in re["points"]] == \
        [(p["label"], p["shape"], p["wikitext2_ppl"], p["latency"]["arch"]) for p in json.loads(json.dumps(pts))]
    assert all(p["latency"]["rounds"] == 2 for p in re["points"]) and re["latency"]["first_pass"]["workload"] == "b1-p8-g4"
    assert (env["root"] / "f3.png").stat().st_size > 1000
    with pytest.raises(DataMissingError, match="finished Figure 3"):
        _script("figure3").main(_args(env, "f3-none.json", "--remeasure", "2"))
    md = _script("render").figure3(doc)
    assert "| AmoebaLLM | 9 |" in md and "| angular (no FT) | 2 |" in md and "Fine-tuned points" in md and "| magnitude + LoRA |" in md


def test_figure3_resumes_finished_points(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    figure3 = _script("figure3")
    args = _args(env, "f3-resume.json", "--checkpoint", str(env["ckpt"]), "--methods", "angular", "--depths", "4,3")
    first = figure3.main(args)
    partial = json.loads((env["root"] / "f3-resume.json").read_text())
    assert partial["done"] == ["method:angular"] and all("key" in p for p in partial["points"])

    import bench.paper.common as common
    import core.baselines as baselines

    def no_work(*a: Any, **k: Any) -> Any:
        raise AssertionError("a finished point or method was computed again")

    monkeypatch.setattr(common.EvalSuite, "evaluate", no_work)
    monkeypatch.setattr(baselines, "build_baseline_strategy", no_work)
    again = figure3.main(args)
    assert again["points"] == json.loads(json.dumps(first["points"]))
    monkeypatch.undo()
    more = figure3.main([*args, "--methods", "angular,flap"])  # a method added later: only its points are new
    assert {p["label"] for p in more["points"]} == {"AmoebaLLM", "angular (no FT)", "flap (no FT)"}
    assert [p for p in more["points"] if p["label"] != "flap (no FT)"] == json.loads(json.dumps(first["points"]))


def test_bad_input_is_one_line_and_exit_2(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    from bench.paper.common import run_script

    other = tmp_path / "other"
    make_tiny(vocab=512, layers=4, seed=1).save_pretrained(str(other))
    for src in (env["model"] / "tokenizer.json", env["model"] / "tokenizer_config.json"):
        (other / src.name).write_bytes(src.read_bytes())
    capsys.readouterr()
    cases = [
        (_script("table3"), ["--methods", "dp,flap"], "only depth methods fit here; flap is not"),
        (_script("table3"), ["--methods", "nope"], "unknown baseline 'nope'"),
        (_script("table3"), ["--reuse-dp", str(env["ckpt"] / "strategy")], "calibrated on other tokens than these 4 windows of 16"),
        (_script("table3"), ["--reuse-dp", str(tmp_path)], "is not a strategy directory"),
        (_script("dp_variants"), ["--variants", "nll-4k,nope"], "unknown DP variant(s) ['nope']"),
        (_script("table1"), ["--checkpoint", str(tmp_path / "missing")], "checkpoint not found"),
        (_script("figure3"), ["--checkpoint", str(env["ckpt"]), "--model", str(other)], "other base weights"),
    ]
    for module, extra, msg in cases:
        monkeypatch.setattr(sys, "argv", ["x", *_args(env, "bad.json", *extra)])
        with pytest.raises(SystemExit) as e:
            run_script(module.main)
        err = [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("Loading weights")]  # transformers' own bar
        assert e.value.code == 2 and len(err) == 1 and msg in err[0], err
    assert not (env["root"] / "bad.json").exists() and not (env["root"] / "bad.rows.json").exists()


def _stage1_on_table3_windows(env: dict[str, Path], out: Path) -> Path:
    """A Stage 1 strategy calibrated on exactly the windows ``--tiny`` gives the paper scripts (4 of 16 tokens)."""
    from core.data.tokens import tokenize_file
    from core.eval.target import load_tokenizer
    from core.model.loader import load_base_model, weights_sha256
    from core.strategy.calibrate import CalibrationConfig, calibrate

    tok = load_tokenizer(env["model"])
    ids = tokenize_file(env["corpus"] / "calibration.txt", tok, cache_dir=out / "tokens")
    hf, info = load_base_model(env["model"])
    st = calibrate(hf, info, weights_sha256(env["model"]), ids, CalibrationConfig(min_layers=2, widths=(1.0, 0.5), window=16, num_windows=4))
    return st.save(out / "stage1")


def test_table3_resumes_and_reuses_a_stage1_dp(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    table3 = _script("table3")
    args = _args(env, "t3r.json", "--depths", "3,2", "--methods", "dp,drop-last", "--no-plot", "--tasks", "piqa")
    first = table3.main(args)
    stage1 = _stage1_on_table3_windows(env, tmp_path)
    reused = table3.main([*args, "--reuse-dp", str(stage1), "--out", str(env["root"] / "t3s.json")])
    for d in ("3", "2"):  # Stage 1's depth DP is the dp baseline: same sets, same objective
        a, b = first["methods"]["dp"]["depths"][d], reused["methods"]["dp"]["depths"][d]
        assert a["kept"] == b["kept"] and a["calibration_ppl"] == pytest.approx(b["calibration_ppl"])
    assert reused["methods"]["dp"]["meta"]["reused_from_stage1"] is True
    calls: list[int] = []
    monkeypatch.setattr(table3, "evaluate", lambda *a, **k: calls.append(1) or {})
    again = table3.main(args)  # every row and strategy is on disk: nothing is evaluated or built again
    assert calls == [] and again["table"] == first["table"]
    assert first["full"]["tasks"]["piqa"]["n"] == 3 and "mc_mean_acc_norm_stderr" in first["full"]
    rows_file = env["root"] / "t3r.rows.json"
    old = json.loads(rows_file.read_text())  # rows written before per-window perplexities were kept get only those
    for r in old["rows"]:
        for stream in ("wikitext2", "book"):
            for k in ("nll_stderr", "window_nll"):
                r["eval"][stream].pop(k)
    rows_file.write_text(json.dumps(old))
    upgraded = table3.main(args)
    assert calls == [] and upgraded["table"] == first["table"]
    for d in ("3", "2"):
        ev = upgraded["methods"]["dp"]["depths"][d]["wikitext2"]
        assert ev["nll_stderr"] == pytest.approx(first["methods"]["dp"]["depths"][d]["wikitext2"]["nll_stderr"]) and ev["nll_stderr"] > 0
    assert upgraded["full"]["book"]["window_nll"] == pytest.approx(first["full"]["book"]["window_nll"])
    partial = table3.main([*args[:args.index("--methods") + 1], "dp,drop-last,angular", *args[args.index("--methods") + 2:], "--report-only"])
    assert calls == [] and set(partial["methods"]) == {"dp", "drop-last"} and partial["incomplete_methods"] == {"angular": []}


def test_dp_variants_score_every_variant_on_heldout_data(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    table3, dpv = _script("table3"), _script("dp_variants")
    t3 = table3.main(_args(env, "t3v.json", "--depths", "3,2", "--methods", "dp", "--no-plot"))
    doc = dpv.main(_args(env, "dpv.json", "--depths", "3,2", "--table3-rows", str(env["root"] / "t3v.rows.json")))
    _check_record(doc, "dp_variants.py")
    rows = {r["key"]: r for r in doc["rows"]}
    assert set(rows) == {f"{v}:{d}" for v in dpv.VARIANTS for d in (3, 2)}
    for d in (3, 2):  # nll-4k is the dp of Table 3: the same subnet, reused rather than evaluated again
        assert rows[f"nll-4k:{d}"]["kept"] == t3["methods"]["dp"]["depths"][str(d)]["kept"]
        assert rows[f"nll-4k:{d}"]["source"] == "reused (same subnet)"
        assert all(len(rows[f"{v}:{d}"]["kept"]) == d and 3 in rows[f"{v}:{d}"]["kept"] for v in dpv.VARIANTS)
        assert all(math.isfinite(r["holdout_nll"]) for r in rows.values())
    pick = doc["builds"]["beam-holdout"]["holdout_pick"]
    for d, p in pick.items():  # the beam's final set is the one with the lowest holdout NLL
        assert len(p["holdout_nll"]) == 2 and p["holdout_nll"][p["rank_on_fit"]] == min(p["holdout_nll"])
        assert rows[f"beam-holdout:{d}"]["holdout_nll"] == pytest.approx(min(p["holdout_nll"]), rel=1e-5)
    assert doc["builds"]["mc-mmlu"]["metric"] == "mc-ce" and doc["summary"]["default_by_heldout_books"] in dpv.VARIANTS
    monkeypatch.setattr(dpv, "build_variant", lambda *a, **k: pytest.fail("rebuilt a saved DP"))
    monkeypatch.setattr(dpv.table3, "evaluate", lambda *a, **k: pytest.fail("re-evaluated a finished row"))
    assert dpv.main(_args(env, "dpv.json", "--depths", "3,2"))["rows"] == json.loads(json.dumps(doc["rows"]))


def test_figure3_two_flows_pareto_shapes_and_reused_evals(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    figure3, table3 = _script("figure3"), _script("table3")
    table3.main(_args(env, "t3f.json", "--depths", "4,3", "--methods", "angular", "--no-plot"))
    evaluated: list[str] = []
    real = _script("common").EvalSuite.evaluate

    def counting(self: Any, target: Any, **k: Any) -> Any:
        evaluated.append(type(target).__name__)
        return real(self, target, **k)

    monkeypatch.setattr(_script("common").EvalSuite, "evaluate", counting)
    args = _args(env, "f3e.json", "--checkpoint", str(env["ckpt"]), "--methods", "angular", "--depths", "4,3", "--amoeba-shapes", "pareto:3",
                 "--engines", "torch,onnxruntime", "--reuse-evals", str(env["root"] / "t3f.rows.json"))
    doc = figure3.main(args)
    amoeba = [p for p in doc["points"] if p["method"] == "amoeba"]
    angular = [p for p in doc["points"] if p["method"] == "angular"]
    front = doc["amoeba_pareto"]
    assert {p["shape"] for p in amoeba} == set(front["chosen"]) and 1 <= len(amoeba) <= 3 and len(angular) == 2
    for k in front["chosen"]:  # nothing smaller-or-equal is better
        f, q = front["scored"][k]["fraction"], front["scored"][k]["calibration_ppl"]
        assert not any(v["fraction"] <= f and v["calibration_ppl"] < q for v in front["scored"].values())
    assert len(evaluated) == len(amoeba)  # the angular subnets were scored by Table 3 with the same settings: not again
    t3rows = {r["fingerprint"]: r["eval"] for r in json.loads((env["root"] / "t3f.rows.json").read_text())["rows"] if "fingerprint" in r}
    assert all(p["wikitext2_ppl"] == t3rows[p["fingerprint"]]["wikitext2"]["ppl"] for p in angular)
    for p in doc["points"]:
        by = p["latency"]["by_engine"]
        assert set(by) == {"torch", "onnxruntime"} and by["torch"]["tpot_ms"] == p["latency"]["tpot_ms"] and by["onnxruntime"]["tpot_ms"] > 0
    assert doc["latency"]["engines"] == ["torch", "onnxruntime"] and (env["root"] / "f3e.png").stat().st_size > 1000
    re = figure3.main(_args(env, "f3e.json", "--remeasure", "1", "--engines", "torch,onnxruntime"))
    assert all(set(p["latency"]["by_engine"]) == {"torch", "onnxruntime"} and p["latency"]["rounds"] == 1 for p in re["points"])
    with pytest.raises(Exception, match="pareto:N with N >= 2"):
        figure3.parse_args(["--amoeba-shapes", "pareto:1"])


def test_dp_variants_resume_a_stopped_dp_from_its_saved_state(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import core.strategy.depth_dp as ddp

    dpv = _script("dp_variants")
    args = _args(env, "dps.json", "--depths", "3,2", "--variants", "nll-mixed", "--tasks", "")
    clean = dpv.main([*args, "--out", str(env["root"] / "dps-clean.json")])
    real = ddp.depth_dp

    class Stop(Exception):
        pass

    def stopping(*a: Any, on_state: Any = None, **k: Any) -> Any:
        def state_then_stop(s: Any) -> None:
            on_state(s)
            if s.n == 2:
                raise Stop
        return real(*a, on_state=state_then_stop, **k)

    monkeypatch.setattr(ddp, "depth_dp", stopping)
    with pytest.raises(Stop):
        dpv.main(args)
    states = list((env["root"] / "dps.strategies").glob("*/nll-mixed.dpstate.json"))
    assert len(states) == 1 and json.loads(states[0].read_text())["state"]["n"] == 2
    monkeypatch.setattr(ddp, "depth_dp", real)
    resumed = dpv.main(args)
    assert [r["kept"] for r in resumed["rows"]] == [r["kept"] for r in clean["rows"]] and not states[0].exists()
    assert resumed["builds"]["nll-mixed"]["dp_evaluations"] == clean["builds"]["nll-mixed"]["dp_evaluations"]


def test_render_bolds_only_differences_beyond_two_standard_errors() -> None:
    render = _script("render")

    def ev(nlls: list[float], mc: float, se: float = 0.01) -> dict[str, Any]:
        mu = sum(nlls) / len(nlls)
        stream = {"ppl": math.exp(mu), "nll": mu, "nll_stderr": 0.01, "window_nll": nlls}
        return {"wikitext2": stream, "book": stream, "mc_mean_acc_norm": mc, "mc_mean_acc_norm_stderr": se}

    base = [3.0, 3.2, 2.9, 3.1]
    a, b = ev(base, 0.45), ev([x + 0.2 for x in base], 0.40)  # paired gap 0.2 with zero spread; mc gap 0.05 > 2·sqrt(2)·0.01
    assert render.clear_winner({"a": a, "b": b}, "wikitext2") == "a" and render.clear_winner({"a": a, "b": b}, "mc") == "a"
    noisy = ev([3.1, 3.0, 3.3, 2.8], 0.44)  # a gap of a few hundredths with a spread of tenths: no winner
    assert render.clear_winner({"a": a, "c": noisy}, "wikitext2") is None and render.clear_winner({"a": a, "c": noisy}, "mc") is None
    assert render.clear_winner({"a": a, "twin": json.loads(json.dumps(a)), "b": b}, "book") == "a"  # a twin subnet is no rival
    assert render.paired_se([1.0], [2.0]) is None


def test_table1_reuses_table3_evaluations_of_the_same_pruned_subnet(env: dict[str, Path]) -> None:
    table1, table3 = _script("table1"), _script("table3")
    t3 = table3.main(_args(env, "t3t1.json", "--depths", "3,2", "--methods", "ppl-block", "--no-plot"))
    doc = table1.main(_args(env, "t1r.json", "--checkpoint", str(env["ckpt"]), "--methods", "ppl-block", "--targets", "0.5", "--min-layers", "2",
                            "--no-finetune", "--reuse-evals", str(env["root"] / "t3t1.rows.json")))
    row = next(r for r in doc["rows"] if r["key"] == "ppl-block|0.5|pruned")
    assert row["shape"] == "L2-a1-f1" and row["eval_reused"] is True
    assert row["eval"]["wikitext2"] == t3["methods"]["ppl-block"]["depths"]["2"]["wikitext2"]


def test_render_pairs_multiple_choice_item_by_item_when_hits_are_kept() -> None:
    render = _script("render")

    def ev(hits: str) -> dict[str, Any]:
        acc = hits.count("1") / len(hits)
        return {"mc_mean_acc_norm": acc, "mc_mean_acc_norm_stderr": math.sqrt(acc * (1 - acc) / len(hits)),
                "tasks": {"t": {"hits_norm": hits}}}

    a, b = ev("1" * 60 + "0" * 40), ev("1" * 52 + "0" * 48)  # b misses 8 of a's hits and nothing else
    assert render.paired_mc_se(a, b) == pytest.approx(math.sqrt(0.08 * 0.92 * 100 / 99 / 100))
    assert render.clear_winner({"a": a, "b": b}, "mc") == "a"  # paired: 0.08 > 2 × 0.027; unpaired (2 × 0.070) it would not be
    del a["tasks"]
    assert render.clear_winner({"a": a, "b": b}, "mc") is None
