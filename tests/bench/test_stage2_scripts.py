"""Smoke tests of bench/stage2.py and bench/stage2_ablation.py in --tiny mode, and their pure pieces (seconds)."""

from __future__ import annotations

import json
import math
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import common_eval  # noqa: E402
import stage2  # noqa: E402
import stage2_ablation  # noqa: E402

from core.checkpoint import checkpoint_sha256  # noqa: E402
from core.errors import ConfigError  # noqa: E402
from core.spec import DEFAULT_WIDTHS, ShapeSpace  # noqa: E402


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny setup (model, tokenizer, strategy, texts) shared by the tests of this module."""
    w = tmp_path_factory.mktemp("bench")
    common_eval.make_tiny_setup(w / "tiny")
    return w


def load(p: Path) -> dict[str, Any]:
    return json.loads(p.read_text())


# ---- pure pieces -------------------------------------------------------------------------------------
def test_grid_shapes_depth_step_and_widths_modes() -> None:
    space = ShapeSpace(12, 6, DEFAULT_WIDTHS)
    full = stage2.grid_shapes(space)
    assert len(full) == 7 * 16 == len(set(full)) and full[0].key == "L12-a1-f1" and full[-1].key == "L6-a0.625-f0.625"
    thin = stage2.grid_shapes(space, depth_step=4, widths_mode="diag")
    assert sorted({s.num_layers for s in thin}, reverse=True) == [12, 8, 6]  # the smallest depth is always included
    assert all(s.attn_width == s.ffn_width for s in thin) and len(thin) == 3 * 4
    with pytest.raises(ConfigError, match="depth-step"):
        stage2.grid_shapes(space, depth_step=0)
    with pytest.raises(ConfigError, match="widths-mode"):
        stage2.grid_shapes(space, widths_mode="upper")


def test_spread_windows_covers_the_stream() -> None:
    ids = torch.arange(105)
    picked = common_eval.spread_windows(ids, 10, 3)
    assert picked.tolist() == list(range(0, 10)) + list(range(40, 50)) + list(range(90, 100))  # first, middle, last full window
    assert common_eval.spread_windows(ids, 10, None).tolist() == list(range(100))
    assert common_eval.spread_windows(ids, 10, 50).numel() == 100
    with pytest.raises(ConfigError, match="shorter than one window"):
        common_eval.spread_windows(ids[:5], 10, 3)


def test_ablation_shapes_and_config_mismatch() -> None:
    shapes = stage2_ablation.ablation_shapes(ShapeSpace(12, 6, DEFAULT_WIDTHS), between=3)
    assert shapes[0].key == "L12-a1-f1" and shapes[-1].key == "L6-a0.625-f0.625" and len(shapes) == len(set(shapes)) == 5
    assert [s.num_layers for s in shapes] == sorted((s.num_layers for s in shapes), reverse=True)
    assert len(stage2_ablation.ablation_shapes(ShapeSpace(12, 6, DEFAULT_WIDTHS), between=0)) == 2
    b = stage2_ablation.Budget()
    full = stage2_ablation.variant_config(b, stage2_ablation.VARIANTS["full"])
    cfgs = {n: stage2_ablation.variant_config(b, v, threads=2, checkpoint_every=7) for n, v in stage2_ablation.VARIANTS.items()}
    assert stage2_ablation.config_mismatch(full, cfgs["full"]) == []  # threads / checkpoint cadence do not matter
    assert stage2_ablation.config_mismatch(full, cfgs["lora"]) == ["adapter"]
    assert stage2_ablation.config_mismatch(full, cfgs["no_balance"]) == ["balance"]
    assert stage2_ablation.config_mismatch(full, cfgs["no_distill"]) == ["distill"]


# ---- bench/stage2.py ---------------------------------------------------------------------------------
def test_stage2_tiny_grid_before_after(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "stage2.json"
    assert stage2.main(["--tiny", "--work-dir", str(work), "--out", str(out)]) == 0
    doc = load(out)
    assert doc["grid"]["n_shapes"] == 27 == len(doc["shapes"]) and doc["grid"]["depths"] == [4, 3, 2]
    assert doc["command"].startswith("python bench/stage2.py --tiny") and len(doc["load_avg_before"]) == 3 and doc["wall_s"] > 0
    assert doc["after"]["checkpoint_sha256"] == checkpoint_sha256(work / "tiny-smol") and doc["after"]["step"] == 4
    assert doc["eval"]["defaults"] == {"window": 256, "max_windows": 32, "batch_size": 4} and doc["eval"]["window_used"] == 32
    assert all(d["windows_used"] == 4 for d in doc["eval"]["datasets"].values())
    changed = 0
    for row in doc["shapes"].values():
        for ds in ("wikitext2", "heldout"):
            r = row[ds]
            assert r["rel_change"] == pytest.approx((r["after"] - r["before"]) / r["before"])
            changed += r["after"] != r["before"]
    assert changed > 0  # the adapters change the model
    s = doc["summary"]["heldout"]
    assert s["improved"] == sum(r["heldout"]["after"] < r["heldout"]["before"] for r in doc["shapes"].values())
    assert s["improved"] + s["not_improved"] == 27 and len(s["worst"]) == 5
    assert s["worst"][0]["rel_change"] == max(r["heldout"]["rel_change"] for r in doc["shapes"].values())
    assert "wrote" in capsys.readouterr().out

    # the 'before' of the full shape is the plain HF base model on the same windows
    from transformers import AutoModelForCausalLM

    from core.eval.perplexity import perplexity_from_ids
    from core.eval.target import load_tokenizer

    base = work / "tiny" / "base"
    hf = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()
    streams = common_eval.load_streams(load_tokenizer(base), work / "tiny" / "wikitext2", work / "tiny" / "corpus" / "validation.txt",
                                       common_eval.TINY_EVAL, 128)
    for ds, st in streams.items():
        ref = perplexity_from_ids(lambda ids: hf(input_ids=ids, use_cache=False).logits, st.ids, st.window)
        assert doc["shapes"]["L4-a1-f1"][ds]["before"] == pytest.approx(ref.ppl, rel=1e-5)

    thin = work / "stage2-diag.json"
    assert stage2.main(["--tiny", "--work-dir", str(work), "--widths-mode", "diag", "--depth-step", "2", "--out", str(thin)]) == 0
    doc2 = load(thin)
    assert list(doc2["shapes"]) == ["L4-a1-f1", "L4-a0.75-f0.75", "L4-a0.5-f0.5", "L2-a1-f1", "L2-a0.75-f0.75", "L2-a0.5-f0.5"]
    assert doc2["shapes"]["L2-a0.5-f0.5"] == doc["shapes"]["L2-a0.5-f0.5"]  # deterministic evaluation


def test_stage2_refuses_a_checkpoint_with_another_strategy(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoConfig

    from core.model.loader import ModelInfo, weights_sha256
    from core.strategy.schema import naive_strategy

    assert stage2.main(["--tiny", "--work-dir", str(work), "--out", str(tmp_path / "warm.json")]) == 0  # the tiny checkpoint exists
    base2 = tmp_path / "base2"
    shutil.copytree(work / "tiny" / "base", base2)
    shutil.rmtree(base2 / "strategy")
    info = ModelInfo.from_config(AutoConfig.from_pretrained(str(base2)))
    naive_strategy(info, weights_sha256(base2), min_layers=3, widths=(1.0, 0.75, 0.5)).save(base2 / "strategy")
    out = tmp_path / "s.json"
    args = ["--base", str(base2), "--checkpoint", str(work / "tiny-smol"), "--heldout", str(work / "tiny" / "corpus" / "validation.txt"),
            "--wikitext-dir", str(work / "tiny" / "wikitext2"), "--window", "32", "--max-windows", "2", "--out", str(out)]
    capsys.readouterr()
    assert stage2.main(args) == 2
    err = capsys.readouterr().err
    assert "strategy differs" in err and "Traceback" not in err and not out.exists()
    assert stage2.main(args[:2] + ["--checkpoint", str(work / "tiny" / "base")] + args[4:]) == 2
    assert "not a fine-tuned Amoeba checkpoint" in capsys.readouterr().err
    assert stage2.main(["--tiny", "--work-dir", str(work), "--depth-step", "0", "--out", str(out)]) == 2
    assert "--depth-step must be >= 1" in capsys.readouterr().err and not out.exists()


# ---- bench/stage2_ablation.py ------------------------------------------------------------------------
def test_ablation_tiny_trains_each_variant_once_and_merges(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "ablation.json"
    args = ["--tiny", "--work-dir", str(work), "--out", str(out)]
    assert stage2_ablation.main(args) == 0
    doc = load(out)
    v = doc["variants"]
    assert doc["complete"] and list(v) == ["full", "lora", "no_balance", "no_distill"] and all(e["status"] == "trained" for e in v.values())
    assert v["lora"]["config"]["adapter"]["mixture"] == "lora" and not v["no_balance"]["config"]["balance"] and not v["no_distill"]["config"]["distill"]
    assert {e["step"] for e in v.values()} == {3} and {e["train"]["tokens_seen"] for e in v.values()} == {3 * 2 * 16}
    assert doc["settings"]["shapes"] == ["L4-a1-f1", "L3-a0.75-f0.75", "L2-a0.5-f0.5"] and doc["budget_source"] == "tiny preset"
    assert list(doc["reference"]["results"]) == doc["settings"]["shapes"]
    for e in v.values():
        assert e["checkpoint_sha256"] == checkpoint_sha256(Path(e["checkpoint"]))
        assert list(e["results"]) == doc["settings"]["shapes"] and e["train_command"].startswith("amoeba finetune ")
        assert e["command"].startswith("python bench/stage2_ablation.py --tiny") and f"--variants {e['variant']}" in e["command"]
    assert doc["summary"]["heldout"]["full"]["vs_full_pct"] == 0.0
    for name in ("lora", "no_balance", "no_distill"):  # the change vs full, paired over the same windows
        sm = doc["summary"]["heldout"][name]
        d = stage2_ablation.paired_nll_diff(v[name]["results"], v["full"]["results"], "heldout")
        assert d is not None and sm["vs_full_nll"] == pytest.approx(d[0]) and sm["vs_full_nll_se"] == pytest.approx(d[1]) and d[1] > 0
        assert sm["beyond_2se"] == (abs(d[0]) > 2 * d[1])
        assert math.log(sm["geo_mean_ppl"] / doc["summary"]["heldout"]["full"]["geo_mean_ppl"]) == pytest.approx(d[0], rel=1e-4, abs=1e-9)
    assert v["full"]["results"] != v["lora"]["results"]
    md = _render().ablation(doc)  # the docs' tables come from this JSON
    assert "| shape | reference | full | lora | no_balance | no_distill |" in md and md.count("| L4-a1-f1 |") == 2
    mtime = (work / "lora" / "checkpoint" / "adapters.safetensors").stat().st_mtime_ns

    # a rerun of one variant evaluates the existing checkpoint (no training) and keeps the other entries
    assert stage2_ablation.main(shlex.split(v["lora"]["command"])[2:]) == 0
    doc2 = load(out)
    assert list(doc2["variants"]) == list(v) and doc2["variants"]["lora"]["status"] == "existing"
    assert doc2["variants"]["lora"]["results"] == v["lora"]["results"] and doc2["variants"]["full"] == v["full"]
    assert (work / "lora" / "checkpoint" / "adapters.safetensors").stat().st_mtime_ns == mtime

    # another budget: refused without --force (nothing lost), retrained with it
    capsys.readouterr()
    assert stage2_ablation.main(args + ["--variants", "lora", "--max-steps", "4"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "--force" in err and load(out) == doc2
    assert stage2_ablation.main(args + ["--variants", "lora", "--max-steps", "4", "--force"]) == 0
    doc3 = load(out)
    assert list(doc3["variants"]) == ["lora"] and doc3["variants"]["lora"]["status"] == "trained" and doc3["variants"]["lora"]["step"] == 4
    assert stage2_ablation.main(args + ["--variants", "lora,moe"]) == 2
    assert "unknown variant(s) moe" in capsys.readouterr().err

    # a time limit stops a variant with a run checkpoint; the next run resumes it to the same result
    assert stage2_ablation.main(args + ["--variants", "no_distill", "--force", "--max-minutes", "0"]) == 0
    stopped = load(out)["variants"]["no_distill"]
    assert stopped["status"] == "incomplete" and stopped["train"]["steps"] == 1 and "results" not in stopped
    assert stage2_ablation.main(args + ["--variants", "no_distill"]) == 0
    resumed = load(out)["variants"]["no_distill"]
    assert resumed["status"] == "trained" and resumed["step"] == 3
    for key, row in v["no_distill"]["results"].items():
        for ds in ("wikitext2", "heldout"):
            assert resumed["results"][key][ds]["ppl"] == pytest.approx(row[ds]["ppl"], rel=1e-6)


def test_ablation_train_command_reproduces_and_full_reuses_the_default(work: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "ablation.json"
    assert stage2_ablation.main(["--tiny", "--work-dir", str(work), "--variants", "full", "--out", str(out)]) == 0
    entry = load(out)["variants"]["full"]
    cmd = shlex.split(entry["train_command"])
    for flag, value in (("--out", tmp_path / "cli-smol"), ("--run-dir", tmp_path / "cli-run")):
        cmd[cmd.index(flag) + 1] = str(value)
    from tests.factories import run_cli

    assert cmd[:2] == ["amoeba", "finetune"]
    r = run_cli(*cmd[1:])
    assert r.exit_code == 0, r.output
    a = load_file(str(Path(entry["checkpoint"]) / "adapters.safetensors"))
    b = load_file(str(tmp_path / "cli-smol" / "adapters.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the recorded command trains the same adapters

    other = tmp_path / "work2"
    (other / "tiny").parent.mkdir(parents=True)
    shutil.copytree(work / "tiny", other / "tiny")
    out2 = tmp_path / "ablation2.json"
    assert stage2_ablation.main(["--tiny", "--work-dir", str(other), "--variants", "full", "--default-checkpoint", str(tmp_path / "cli-smol"),
                                 "--out", str(out2)]) == 0
    e2 = load(out2)["variants"]["full"]
    assert e2["status"] == "reused" and e2["checkpoint"] == str(tmp_path / "cli-smol") and not (other / "full").exists()
    assert e2["results"] == entry["results"]


def _render() -> Any:
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench.paper import render

    return render


def test_ablation_multiple_choice_is_paired_item_by_item(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "ablation-mc.json"
    own = tmp_path / "work"  # its own variant checkpoints: the module's work dir holds other budgets by now
    own.mkdir()
    shutil.copytree(work / "tiny", own / "tiny")
    args = ["--tiny", "--work-dir", str(own), "--variants", "full,lora", "--mc-shapes", "L4-a1-f1,L2-a0.5-f0.5", "--mc-tasks", "winogrande,arc_easy",
            "--out", str(out)]
    assert stage2_ablation.main(args) == 0
    doc = load(out)
    assert doc["settings"]["mc"]["shapes"] == ["L4-a1-f1", "L2-a0.5-f0.5"] and doc["settings"]["mc"]["limit"] == 3
    for name in ("full", "lora"):
        for key in ("L4-a1-f1", "L2-a0.5-f0.5"):
            mc = doc["variants"][name]["results"][key]["mc"]
            assert set(mc["tasks"]) == {"winogrande", "arc_easy"} and all(len(t["hits_norm"]) == 3 for t in mc["tasks"].values())
            assert mc["mean_acc_norm"] == pytest.approx(sum(t["acc_norm"] for t in mc["tasks"].values()) / 2)
        assert "mc" not in doc["variants"][name]["results"]["L3-a0.75-f0.75"]
    assert "mc" in doc["reference"]["results"]["L4-a1-f1"]
    row = doc["summary"]["mc"]["lora"]
    from mc_common import paired_mc_diff

    ds = [paired_mc_diff(doc["variants"]["lora"]["results"][k]["mc"], doc["variants"]["full"]["results"][k]["mc"]) for k in row["shapes"]]
    assert row["vs_full_acc_norm"] == pytest.approx(sum(d[0] for d in ds) / 2)
    assert row["beyond_2se"] == (abs(row["vs_full_acc_norm"]) > 2 * row["vs_full_acc_norm_se"])
    md = _render().ablation(doc)
    assert "**Multiple choice**" in md and "| lora |" in md
    again = stage2_ablation.main(args)  # the reference and both variants come from --out: nothing is scored again
    assert again == 0 and load(out)["reference"] == doc["reference"]


def test_paired_mc_difference_is_tighter_than_the_accuracies() -> None:
    from mc_common import paired_mc_diff

    a = {"tasks": {"t": {"hits_norm": "1101101101" * 10}}}
    b = {"tasks": {"t": {"hits_norm": "1101101100" * 10}}}  # one item in ten differs
    d, se = paired_mc_diff(a, b)
    assert d == pytest.approx(0.1) and se == pytest.approx(math.sqrt(0.09 * 100 / 99 / 100))
    assert paired_mc_diff(a, {"tasks": {"t": {"hits_norm": "1"}}}) is None and paired_mc_diff(a, {"tasks": {}}) is None
