"""Table-4 style ablations of Stage 2 at one budget → ``bench/results/stage2_ablation.json``.

Variants (each fine-tuned through the library with the same steps, batch, sequence length, adapter size and seed):
  full        AmoebaLLM: SMoL (mixture of LoRAs + shape router) + loss-magnitude balancing + in-place distillation
  lora        one shared LoRA instead of SMoL (``--mixture lora``)
  no_balance  no loss-magnitude balancing (``--no-balance``)
  no_distill  no distillation: plain cross-entropy for every shape (``--no-distill``)
Each variant trains in ``<work-dir>/<variant>/run`` (resumable: rerun after a stop or ``--max-minutes``) into
``<work-dir>/<variant>/checkpoint``; an existing checkpoint with the same settings is evaluated, not retrained,
unless ``--force``. ``full`` reuses ``--default-checkpoint`` when its training config and strategy match. Every
variant and the untuned base + strategy (``reference``) are scored on a fixed set of shapes (largest, smallest,
``--between`` in between) on WikiText-2 test and the held-out books. Budget flags left out take the default
checkpoint's training config when it exists, else the ``amoeba finetune`` defaults.

    python bench/stage2_ablation.py                          # all variants, budget of models/amoeba-tiny-smol
    python bench/stage2_ablation.py --variants lora --max-minutes 60   # one variant; results merge into --out
    python bench/stage2_ablation.py --tiny --out /tmp/ablation.json    # tiny random model, seconds (smoke test)
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common_eval import (  # noqa: E402
    DATASETS,
    DEFAULT_EVAL,
    ROOT,
    EvalSettings,
    Stream,
    add_common_args,
    advance_bar,
    command_line,
    eval_args,
    eval_settings,
    eval_shapes,
    heldout_text,
    load_avg,
    load_streams,
    make_tiny_setup,
    run_main,
    save_json,
    set_threads,
    strategy_diff,
    train_checkpoint,
)
from mc_common import DEFAULT_TASKS as MC_TASKS  # noqa: E402
from mc_common import MCSettings, load_items, mc_eval, paired_mc_diff  # noqa: E402

from core.errors import ConfigError  # noqa: E402
from core.finetune.config import FinetuneConfig  # noqa: E402
from core.smol.config import SmolConfig  # noqa: E402
from core.spec import ShapeSpace, SubnetSpec  # noqa: E402


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    mixture: str = "smol"
    balance: bool = True
    distill: bool = True


VARIANTS = {v.name: v for v in (
    Variant("full", "AmoebaLLM: SMoL + loss-magnitude balancing + in-place distillation"),
    Variant("lora", "one shared LoRA instead of SMoL (no router)", mixture="lora"),
    Variant("no_balance", "SMoL + distillation, no loss-magnitude balancing", balance=False),
    Variant("no_distill", "SMoL, no distillation: plain CE for every shape", distill=False),
)}


@dataclass(frozen=True)
class Budget:
    """What every variant shares (the ``amoeba finetune`` flags of the same names; defaults are that CLI's, i.e.
    ``FinetuneConfig``'s and ``SmolConfig``'s)."""

    max_steps: int = FinetuneConfig.max_steps
    batch_size: int = FinetuneConfig.batch_size
    seq_len: int = FinetuneConfig.seq_len
    lr: float = FinetuneConfig.lr
    warmup_steps: int = FinetuneConfig.warmup_steps
    shapes_per_step: int = FinetuneConfig.shapes_per_step
    experts: int = SmolConfig.num_experts
    rank: int = SmolConfig.rank
    top_k: int = SmolConfig.top_k
    seed: int = FinetuneConfig.seed
    base_dtype: str = FinetuneConfig.base_dtype
    with_calibration: bool = FinetuneConfig.with_calibration

    @classmethod
    def from_config(cls, cfg: FinetuneConfig) -> Budget:
        return cls(cfg.max_steps, cfg.batch_size, cfg.seq_len, cfg.lr, cfg.warmup_steps, cfg.shapes_per_step, cfg.adapter.num_experts,
                   cfg.adapter.rank, cfg.adapter.top_k, cfg.seed, cfg.base_dtype, cfg.with_calibration)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TINY_BUDGET = Budget(max_steps=3, batch_size=2, seq_len=16, lr=5e-3, warmup_steps=1, shapes_per_step=3, experts=3, rank=2, top_k=2)
#: FinetuneConfig fields that do not change the trained adapters (how often to save/report, threads, time limit)
RUN_ONLY_FIELDS = ("threads", "max_minutes", "device", "checkpoint_every", "eval_every", "eval_batches")


def variant_config(budget: Budget, variant: Variant, *, threads: int = 1, max_minutes: float | None = None, checkpoint_every: int = 25,
                   eval_every: int = 50) -> FinetuneConfig:
    """The ``FinetuneConfig`` exactly as ``amoeba finetune`` builds it from the flags of ``finetune_args``."""
    return FinetuneConfig(
        adapter=SmolConfig(mixture=variant.mixture, num_experts=budget.experts, rank=budget.rank, top_k=budget.top_k),  # type: ignore[arg-type]
        shapes_per_step=budget.shapes_per_step, distill=variant.distill, balance=variant.balance, seq_len=budget.seq_len,
        batch_size=budget.batch_size, max_steps=budget.max_steps, lr=budget.lr, warmup_steps=min(budget.warmup_steps, budget.max_steps),
        checkpoint_every=checkpoint_every, eval_every=eval_every, seed=budget.seed, threads=threads, max_minutes=max_minutes,
        base_dtype=budget.base_dtype, with_calibration=budget.with_calibration,  # type: ignore[arg-type]
    )


def finetune_args(cfg: FinetuneConfig, base: Path, strategy: Path, out: Path, run_dir: Path, corpus: Path) -> list[str]:
    """``amoeba finetune`` arguments that train exactly ``cfg`` (every result-relevant field spelled out)."""
    args = ["amoeba", "finetune", "--base", str(base), "--strategy", str(strategy), "--out", str(out), "--run-dir", str(run_dir),
            "--corpus-dir", str(corpus), "--max-steps", str(cfg.max_steps), "--batch-size", str(cfg.batch_size), "--seq-len", str(cfg.seq_len),
            "--lr", repr(cfg.lr), "--warmup-steps", str(cfg.warmup_steps), "--shapes-per-step", str(cfg.shapes_per_step),
            "--mixture", cfg.adapter.mixture, "--experts", str(cfg.adapter.num_experts), "--rank", str(cfg.adapter.rank),
            "--top-k", str(cfg.adapter.top_k), "--balance" if cfg.balance else "--no-balance", "--distill" if cfg.distill else "--no-distill",
            "--base-dtype", cfg.base_dtype, "--with-calibration" if cfg.with_calibration else "--no-with-calibration", "--seed", str(cfg.seed),
            "--threads", str(cfg.threads), "--checkpoint-every", str(cfg.checkpoint_every), "--eval-every", str(cfg.eval_every)]
    if cfg.max_minutes is not None:
        args += ["--max-minutes", repr(cfg.max_minutes)]
    return args


def config_mismatch(a: FinetuneConfig, b: FinetuneConfig) -> list[str]:
    """Result-relevant fields in which two training configs differ (empty: they train the same adapters)."""
    return [f.name for f in fields(FinetuneConfig) if f.name not in RUN_ONLY_FIELDS and getattr(a, f.name) != getattr(b, f.name)]


def ablation_shapes(space: ShapeSpace, between: int = 3) -> list[SubnetSpec]:
    """Largest, ``between`` shapes evenly in between (depth and both widths shrink together, each width along its own
    ladder: attention ``space.attn_ladder``, MLP ``space.widths``), smallest; no duplicates."""
    if between < 0:
        raise ConfigError(f"--between must be >= 0, got {between}")
    attn, ffn, lo, hi = space.attn_ladder, space.widths, space.min_layers, space.max_layers
    out: list[SubnetSpec] = []
    for k in range(between + 2):
        t = k / (between + 1)
        a, f = attn[round(t * (len(attn) - 1))], ffn[round(t * (len(ffn) - 1))]
        spec = SubnetSpec(round(hi - t * (hi - lo)), a, f)
        if spec not in out:
            out.append(spec)
    return out


def read_checkpoint_doc(path: Path) -> dict[str, Any]:
    """``amoeba_checkpoint.json`` of the checkpoint at ``path`` (``ConfigError`` when absent or unreadable)."""
    f = Path(path) / "amoeba_checkpoint.json"
    try:
        doc: dict[str, Any] = json.loads(f.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} is not an Amoeba checkpoint (no {f.name})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{f} is corrupt: {e}") from None
    return doc


def read_checkpoint_config(path: Path) -> FinetuneConfig:
    """The training config recorded in an Amoeba checkpoint."""
    doc = read_checkpoint_doc(path)
    if "training" not in doc:
        raise ConfigError(f"{path}/amoeba_checkpoint.json records no training config")
    return FinetuneConfig.from_dict(doc["training"])


def reusable(path: Path | None, cfg: FinetuneConfig, strategy: Any, base_sha: str) -> tuple[bool, str]:
    """Whether the checkpoint at ``path`` was trained with ``cfg``'s result-relevant settings on this base and strategy."""
    from core.strategy.schema import Strategy

    if path is None or not (path / "amoeba_checkpoint.json").is_file():
        return False, "absent"
    if read_checkpoint_doc(path).get("base", {}).get("sha256") != base_sha:
        return False, "other base weights"
    diff = config_mismatch(read_checkpoint_config(path), cfg)
    if diff:
        return False, f"training config differs in {', '.join(diff)}"
    sdiff = strategy_diff(Strategy.load(path / "strategy"), strategy)
    if sdiff:
        return False, f"strategy differs in {', '.join(sdiff)}"
    return True, "same training config, base and strategy"


def mean_nll(rows: dict[str, dict[str, dict[str, Any]]], ds: str) -> float:
    """Mean over shapes of the per-token nll on ``ds`` (its exp is the geometric-mean perplexity)."""
    return statistics.fmean(r[ds]["nll"] for r in rows.values())


def paired_nll_diff(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]], ds: str) -> tuple[float, float] | None:
    """Mean NLL difference ``a − b`` on ``ds`` and its standard error: per window, the difference averaged over the
    shapes; the windows (the same text for every entry) are the samples. ``None`` without per-window NLLs."""
    per_shape = []
    for shape, r in a.items():
        wa, wb = r[ds].get("window_nll") or [], b.get(shape, {}).get(ds, {}).get("window_nll") or []
        if len(wa) != len(wb) or len(wa) < 2:
            return None
        per_shape.append([x - y for x, y in zip(wa, wb, strict=True)])
    if not per_shape:
        return None
    per_window = [statistics.fmean(col) for col in zip(*per_shape, strict=True)]
    return statistics.fmean(per_window), statistics.stdev(per_window) / math.sqrt(len(per_window))


def summarize(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per dataset and evaluated entry: geometric-mean perplexity over the shapes, its change vs ``full`` and, when
    windows were kept, that change's standard error (paired over windows) and whether it exceeds two of them."""
    out: dict[str, Any] = {}
    for ds in DATASETS:
        nll = {name: mean_nll(e["results"], ds) for name, e in entries.items() if e.get("results")}
        ref = nll.get("full")
        out[ds] = {name: {"geo_mean_ppl": math.exp(v), "vs_full_pct": None if ref is None else 100 * (math.exp(v - ref) - 1)} for name, v in nll.items()}
        if ref is not None:
            for name in nll:
                d = None if name == "full" else paired_nll_diff(entries[name]["results"], entries["full"]["results"], ds)
                if d is not None:
                    out[ds][name] |= {"vs_full_nll": d[0], "vs_full_nll_se": d[1], "beyond_2se": abs(d[0]) > 2 * d[1]}
    mc = {name: {k: r["mc"] for k, r in e["results"].items() if "mc" in r} for name, e in entries.items() if e.get("results")}
    mc = {n: v for n, v in mc.items() if v}
    if mc:
        out["mc"] = {}
        for name, by_shape in mc.items():
            row: dict[str, Any] = {"mean_acc_norm": statistics.fmean(r["mean_acc_norm"] for r in by_shape.values()), "shapes": sorted(by_shape)}
            full = mc.get("full", {})
            if name != "full" and set(full) == set(by_shape):
                ds = [paired_mc_diff(by_shape[k], full[k]) for k in by_shape]
                if all(d is not None for d in ds):
                    diff = statistics.fmean(d[0] for d in ds if d)
                    se = math.sqrt(sum(d[1] ** 2 for d in ds if d)) / len(ds)  # shapes treated as independent (conservative)
                    row |= {"vs_full_acc_norm": diff, "vs_full_acc_norm_se": se, "beyond_2se": abs(diff) > 2 * se}
            out["mc"][name] = row
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, default=ROOT / "models" / "amoeba-tiny-base")
    ap.add_argument("--strategy", type=Path, default=None, help="Stage 1 strategy (default <base>/strategy)")
    ap.add_argument("--default-checkpoint", type=Path, default=ROOT / "models" / "amoeba-tiny-smol",
                    help="the default Stage 2 checkpoint: variant full reuses it when it matches; its config is the default budget")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)}")
    ap.add_argument("--work-dir", type=Path, default=None, help="variant run dirs and checkpoints (default runs/stage2_ablation; --tiny: a temp dir)")
    ap.add_argument("--corpus-dir", type=Path, default=None, help="prepared corpus (train/validation.txt); default <work-dir>/corpus from the shared data")
    ap.add_argument("--heldout", type=Path, default=None, help="held-out text (default <corpus-dir>/validation.txt)")
    for f in fields(Budget):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            ap.add_argument(flag, type={"int": int, "float": float, "str": str}[str(f.type)], default=None)
    ap.add_argument("--max-minutes", type=float, default=None, help="per variant: stop (with a run checkpoint) after this long; rerun to resume")
    ap.add_argument("--checkpoint-every", type=int, default=25)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--force", action="store_true", help="retrain the selected variants from scratch (their run dirs and checkpoints are deleted)")
    ap.add_argument("--shapes", default=None, help="comma-separated shape keys to evaluate (default: largest, smallest and --between)")
    ap.add_argument("--between", type=int, default=3)
    ap.add_argument("--mc-shapes", default="", help="shapes that also get multiple choice (comma-separated keys; default none)")
    ap.add_argument("--mc-tasks", default=",".join(MC_TASKS), help="multiple-choice tasks")
    ap.add_argument("--mc-limit", type=int, default=500, help="items per task (seeded)")
    ap.add_argument("--mc-seed", type=int, default=0, help="seed of the item subsets")
    add_common_args(ap, ROOT / "bench" / "results" / "stage2_ablation.json")
    return ap.parse_args(argv)


def mc_settings(a: argparse.Namespace, space: ShapeSpace, batch_size: int) -> MCSettings:
    """The multiple-choice part of the protocol (``--mc-*``; shapes validated against the strategy's space)."""
    shapes = tuple(space.validate(k.strip()).key for k in a.mc_shapes.split(",") if k.strip())
    tasks = tuple(t.strip() for t in a.mc_tasks.split(",") if t.strip())
    return MCSettings(shapes=shapes, tasks=tasks, limit=3 if a.tiny else a.mc_limit, seed=a.mc_seed, batch_size=batch_size)


def resolve_budget(a: argparse.Namespace) -> tuple[Budget, str]:
    """Flags over the default checkpoint's config over the CLI defaults (``--tiny``: over the tiny preset)."""
    if a.tiny:
        base, source = TINY_BUDGET, "tiny preset"
    elif a.default_checkpoint is not None and (a.default_checkpoint / "amoeba_checkpoint.json").is_file():
        base, source = Budget.from_config(read_checkpoint_config(a.default_checkpoint)), f"training config of {a.default_checkpoint}"
    else:
        base, source = Budget(), "amoeba finetune defaults"
    given = {f.name: getattr(a, f.name) for f in fields(Budget) if getattr(a, f.name) is not None}
    if given:
        source += " + flags " + ", ".join(sorted(given))
    return replace(base, **given), source


def budget_args(b: Budget) -> list[str]:
    out = []
    for f in fields(Budget):
        v, flag = getattr(b, f.name), f.name.replace("_", "-")
        out += [f"--{flag}" if v else f"--no-{flag}"] if isinstance(v, bool) else [f"--{flag}", repr(v) if isinstance(v, float) else str(v)]
    return out


@dataclass(frozen=True)
class Setup:
    """Resolved inputs shared by every variant."""

    base: Path
    strategy_dir: Path
    corpus: Path
    heldout: Path
    wikitext: Path
    work: Path


def resolve_setup(a: argparse.Namespace, work: Path) -> Setup:
    from core.data.corpus import prepare_corpus
    from core.data.paths import data_dir

    if a.tiny:
        t = make_tiny_setup(work / "tiny")
        base, strategy_dir, corpus, wikitext = t.base, t.strategy, a.corpus_dir or t.corpus, a.wikitext_dir or t.wikitext
    else:
        base, strategy_dir = a.base, a.strategy or a.base / "strategy"
        corpus, wikitext = a.corpus_dir or work / "corpus", a.wikitext_dir or data_dir(a.data_dir) / "wikitext2"
        if not (corpus / "train.txt").is_file():
            if a.corpus_dir is not None:
                raise ConfigError(f"--corpus-dir {corpus} has no train.txt")
            prepare_corpus(data_dir(a.data_dir) / "corpus" / "gutenberg", corpus)
    return Setup(base, strategy_dir, corpus, heldout_text(a.heldout or corpus / "validation.txt", None, work), wikitext, work)


def variant_command(a: argparse.Namespace, s: Setup, budget: Budget, settings: EvalSettings, shapes: list[SubnetSpec], name: str) -> str:
    """The bench command that (re)trains if needed and evaluates just this variant (its entry merges into ``--out``)."""
    args = ["--tiny"] if a.tiny else ["--base", str(s.base), "--strategy", str(s.strategy_dir)]
    args += ["--work-dir", str(s.work), "--corpus-dir", str(s.corpus), "--heldout", str(s.heldout), "--wikitext-dir", str(s.wikitext)]
    if name == "full":
        args += ["--default-checkpoint", str(a.default_checkpoint)]
    args += budget_args(budget) + ["--variants", name, "--shapes", ",".join(x.key for x in shapes)] + eval_args(settings)
    if a.mc_shapes:
        args += ["--mc-shapes", a.mc_shapes, "--mc-tasks", a.mc_tasks, "--mc-limit", str(a.mc_limit), "--mc-seed", str(a.mc_seed)]
    args += ["--checkpoint-every", str(a.checkpoint_every), "--eval-every", str(a.eval_every), "--threads", str(a.threads), "--out", str(a.out)]
    if a.max_minutes is not None:
        args += ["--max-minutes", repr(a.max_minutes)]
    return command_line("stage2_ablation.py", args)


def train_or_reuse(v: Variant, cfg: FinetuneConfig, s: Setup, strategy: Any, base_sha: str, a: argparse.Namespace, bar: Any) -> dict[str, Any]:
    """Decide where this variant's checkpoint comes from (reuse / existing / train) → entry fields incl. ``status``."""
    from core.finetune.state import has_run_state, read_run_meta

    vdir = s.work / v.name
    out, run_dir = vdir / "checkpoint", vdir / "run"
    reuse: dict[str, Any] = {}
    if v.name == "full" and not a.force:
        ok, why = reusable(a.default_checkpoint, cfg, strategy, base_sha)
        if ok:
            return {"status": "reused", "checkpoint": str(a.default_checkpoint), "reuse_check": why}
        reuse = {"reuse_check": f"{a.default_checkpoint} not reused: {why}"}
    if a.force and vdir.exists():
        shutil.rmtree(vdir)
    if (out / "amoeba_checkpoint.json").is_file():
        ok, why = reusable(out, cfg, strategy, base_sha)
        if not ok:
            raise ConfigError(f"{out} holds a {v.name} checkpoint made with other settings ({why}); pass --force to retrain or use another --work-dir")
        train = {"wall_s": read_run_meta(run_dir).get("wall_s")} if has_run_state(run_dir) else {}
        return {"status": "existing", "checkpoint": str(out), "train": train, **reuse}
    if has_run_state(run_dir):
        diff = cfg.resume_compatible(FinetuneConfig.from_dict(read_run_meta(run_dir)["config"]))
        if diff:
            raise ConfigError(f"{run_dir} holds a {v.name} run with other settings ({', '.join(diff)}); pass --force to start over or use another --work-dir")
    task = bar.add_task(f"train {v.name}", total=cfg.max_steps, info="")
    res = train_checkpoint(cfg, s.base, s.strategy_dir, s.corpus, run_dir, out,
                           on_step=lambda st: bar.update(task, completed=st.step, info=" ".join(f"{x.key}:{x.loss:.3f}" for x in st.losses)))
    train = {"steps": res.steps, "tokens_seen": res.tokens_seen, "wall_s": round(res.wall_s, 1), "finished": res.finished, "val_loss": res.val}
    if not res.finished:
        return {"status": "incomplete", "train": train, "note": f"stopped at step {res.steps}/{cfg.max_steps}; rerun the command to resume", **reuse}
    return {"status": "trained", "checkpoint": str(out), "train": train, **reuse}


def evaluate_checkpoint(path: Path, base: Path, shapes: list[SubnetSpec], streams: dict[str, Stream], batch_size: int, bar: Any, label: str,
                        mc: MCTask | None = None) -> dict[str, Any]:
    from core.checkpoint import open_checkpoint

    ck = open_checkpoint(path, base_dir=base)
    results = eval_shapes(ck.elastic, shapes, streams, batch_size, on_shape=advance_bar(bar, f"eval {label}", len(shapes)))
    if mc is not None:
        add_mc(ck.elastic, results, mc, bar, label)
    return {"checkpoint_sha256": ck.checkpoint_sha256, "step": ck.meta.get("step"), "tokens_seen": ck.meta.get("tokens_seen"), "results": results}


@dataclass
class MCTask:
    """What ``add_mc`` needs: the settings, the loaded items, the tokenizer and the model context."""

    settings: MCSettings
    items: dict[str, list[Any]]
    tokenizer: Any
    max_len: int


def add_mc(model: Any, results: dict[str, dict[str, Any]], mc: MCTask, bar: Any, label: str) -> None:
    """Multiple choice at every ``mc.settings.shapes`` shape of ``model`` (an ``ElasticModel``), into ``results[shape]["mc"]``."""
    advance = advance_bar(bar, f"multiple choice {label}", len(mc.settings.shapes))
    for key in mc.settings.shapes:
        spec = model.set_shape(key)
        results[key]["mc"] = mc_eval(model, mc.tokenizer, mc.items, mc.max_len, mc.settings.batch_size)
        advance(spec)


def previous_reference(out: Path, settings_doc: dict[str, Any]) -> dict[str, Any]:
    """The reference entry of an earlier run written to ``out`` with identical settings (not evaluated again)."""
    try:
        doc = json.loads(out.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return dict(doc.get("reference") or {}) if doc.get("settings") == json.loads(json.dumps(settings_doc)) else {}


def previous_variants(out: Path, settings_doc: dict[str, Any]) -> dict[str, Any]:
    """Variant entries of an earlier run written to ``out`` with identical settings (merged into this run's output)."""
    try:
        doc = json.loads(out.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    same = doc.get("settings") == json.loads(json.dumps(settings_doc))
    return dict(doc.get("variants", {})) if same else {}


def run(a: argparse.Namespace, argv: list[str], work: Path) -> dict[str, Any]:
    from cli.common import progress
    from core.elastic.model import ElasticModel
    from core.eval.target import load_tokenizer
    from core.model.loader import load_base_model, weights_sha256
    from core.strategy.schema import Strategy

    names = [n.strip() for n in a.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise ConfigError(f"unknown variant(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(VARIANTS)}")
    set_threads(a.threads)
    load_before, t0 = load_avg(), time.perf_counter()
    settings = eval_settings(a)
    budget, budget_source = resolve_budget(a)
    s = resolve_setup(a, work)
    strategy = Strategy.load(s.strategy_dir)
    base_sha = weights_sha256(s.base)
    hf, info = load_base_model(s.base)
    strategy.check_model(info, base_sha)
    shapes = [strategy.space.validate(k.strip()) for k in a.shapes.split(",") if k.strip()] if a.shapes else ablation_shapes(strategy.space, a.between)
    tokenizer = load_tokenizer(s.base)
    streams = load_streams(tokenizer, s.wikitext, s.heldout, settings, info.max_position_embeddings)
    mcs = mc_settings(a, strategy.space, settings.batch_size)
    mc = None
    if mcs.shapes:
        from core.data.paths import FIXTURES_DIR, data_dir

        mc = MCTask(mcs, load_items(mcs, FIXTURES_DIR / "eval" / "data" if a.tiny else data_dir(a.data_dir)), tokenizer, info.max_position_embeddings)
    settings_doc = {"base_sha256": base_sha, "strategy": str(s.strategy_dir), "budget": budget.to_dict(),
                    "tokens_per_variant": budget.max_steps * budget.batch_size * budget.seq_len,
                    "eval": {**settings.to_dict(), "window_used": next(iter(streams.values())).window, "defaults": DEFAULT_EVAL.to_dict()},
                    "shapes": [x.key for x in shapes], "datasets": {k: st.describe() for k, st in streams.items()}, "mc": mcs.to_dict()}
    variants = previous_variants(a.out, settings_doc)
    reference: dict[str, Any] = previous_reference(a.out, settings_doc)

    def document(complete: bool) -> dict[str, Any]:
        evaluated = {"reference": reference, **{k: v for k, v in variants.items() if v.get("results")}}
        return {"command": command_line("stage2_ablation.py", argv), "complete": complete, "tiny": a.tiny, "wall_s": round(time.perf_counter() - t0, 1),
                "load_avg_before": load_before, "load_avg_after": load_avg(), "torch_threads": a.threads, "budget_source": budget_source,
                "settings": settings_doc, "reference": reference, "variants": variants, "summary": summarize(evaluated)}

    with progress() as bar:
        if not reference:  # the untuned reference, once per settings (kept in --out like the variants)
            ref_model = ElasticModel(hf, strategy).eval()
            results = eval_shapes(ref_model, shapes, streams, settings.batch_size, on_shape=advance_bar(bar, "eval reference", len(shapes)))
            if mc is not None:
                add_mc(ref_model, results, mc, bar, "reference")
            reference.update(description="base + strategy, no fine-tuning", results=results)
        del hf
        for name in names:
            v = VARIANTS[name]
            cfg = variant_config(budget, v, threads=a.threads, max_minutes=a.max_minutes, checkpoint_every=a.checkpoint_every, eval_every=a.eval_every)
            entry: dict[str, Any] = {"variant": name, "description": v.description, "config": cfg.to_dict(),
                                     "train_command": shlex.join(finetune_args(cfg, s.base, s.strategy_dir, s.work / name / "checkpoint",
                                                                               s.work / name / "run", s.corpus)),
                                     "command": variant_command(a, s, budget, settings, shapes, name)}
            entry.update(train_or_reuse(v, cfg, s, strategy, base_sha, a, bar))
            if "checkpoint" in entry:
                entry.update(evaluate_checkpoint(Path(entry["checkpoint"]), s.base, shapes, streams, settings.batch_size, bar, name, mc))
            variants[name] = entry
            save_json(a.out, document(complete=False))  # hours of training: keep what is done on disk
    return document(complete=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = parse_args(argv)
    doc = run_main(a, lambda work: run(a, argv, work), None if a.tiny else ROOT / "runs" / "stage2_ablation")
    if doc is None:
        return 2
    for ds in DATASETS:
        print(f"{ds}: " + "  ".join(f"{k} {v['geo_mean_ppl']:.3f}" for k, v in doc["summary"][ds].items()))
    print(f"wrote {a.out} ({doc['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
