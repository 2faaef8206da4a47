"""Shared test factories: build the objects many test files need in one place."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner, Result


@functools.cache
def cli_app() -> typer.Typer:
    """The real ``amoeba`` app (every verb mounted), built once per test session."""
    from cli.app import build_app

    return build_app()


def run_cli(*args: str | Path | float, **kwargs: Any) -> Result:
    """Invoke ``amoeba ARGS...`` in-process (arguments stringified); ``kwargs`` go to ``CliRunner.invoke``."""
    return CliRunner().invoke(cli_app(), [str(a) for a in args], **kwargs)


def flat(output: str) -> str:
    """CLI output as one line of single-spaced words, rich's box borders dropped (messages wrap at 80 columns)."""
    return " ".join(output.replace("│", " ").split())


# ---- profile tables ---------------------------------------------------------------------------------------------

#: the model facts of ``tests.conftest.make_tiny``'s default (4 layers, hidden 64, 4 heads over 2 KV groups, MLP 128)
TINY_MODEL_FACTS: dict[str, Any] = {"model_type": "llama", "num_layers": 4, "hidden_size": 64, "num_heads": 4, "num_kv_heads": 2, "head_dim": 16,
                                    "intermediate_size": 128, "vocab_size": 97}


def stat(median: float, *, p90: float | None = None, std: float | None = None, repetitions: int = 3) -> dict[str, Any]:
    """One latency statistic of a profile row (p90 5 % and std 2 % of the median unless given)."""
    return {"median": median, "p90": median * 1.05 if p90 is None else p90, "std": median * 0.02 if std is None else std, "repetitions": repetitions}


def table_row(spec: Any, kv_groups: int, ffn_channels: int, *, tpot: float, ttft: float, **extra: Any) -> dict[str, Any]:
    """A profile row of ``spec`` (a ``SubnetSpec``) with its kept dims and latency medians (``extra``: peak_mem_mb, q_heads, ...)."""
    return {"shape": spec.key, "num_layers": spec.num_layers, "kv_groups": kv_groups, "ffn_channels": ffn_channels,
            "ttft_ms": stat(ttft), "tpot_ms": stat(tpot), **extra}


def profile_table(rows: list[dict[str, Any]] | None = None, *, model: dict[str, Any] | None = None, engine: str = "torch",
                  workload: str = "b1-p16-g8", **over: Any) -> dict[str, Any]:
    """A valid profile table document (a test input, not a measurement); edit it to make invalid ones.

    Default rows: two shapes of the tiny model. ``over`` replaces top-level fields.
    """
    from core.spec import SubnetSpec

    if rows is None:
        s = stat(2.0, p90=2.5, std=0.1)
        rows = [{**table_row(SubnetSpec(4, 1.0, 1.0), 2, 128, tpot=2.0, ttft=2.0, peak_mem_mb=10.0), "ttft_ms": s, "tpot_ms": s},
                {**table_row(SubnetSpec(2, 0.5, 0.75), 1, 96, tpot=2.0, ttft=2.0), "ttft_ms": s, "tpot_ms": s}]
    doc = {
        "schema_version": 1,
        "device": {"name": "dev1", "cpu_model": "x", "cpu_count": 2, "threads": 1, "load_avg_start": [0.1, 0.2, 0.3], "load_avg_end": [0.1, 0.2, 0.3]},
        "engine": {"name": engine, "version": "2.13", "dtype": "fp32"},
        "workload": workload,
        "model": dict(TINY_MODEL_FACTS if model is None else model),
        "rows": rows,
    }
    doc.update(over)
    return doc


def make_table(*, shapes: list[tuple[int, float, float]] | None = None, layers: int = 4, workload: str = "b1-p16-g8",
               engine: str = "torch", base_ms: float = 1.0, per_layer_ms: float = 0.5) -> dict[str, Any]:
    """A profile table of the tiny model (depth ``2..layers`` × widths 1, 0.5 unless ``shapes``) whose latencies
    grow with depth and width."""
    from core.spec import SubnetSpec

    shapes = shapes or [(n, a, f) for n in range(2, layers + 1) for a in (1.0, 0.5) for f in (1.0, 0.5)]
    rows = []
    for n, a, f in shapes:
        t = base_ms + n * per_layer_ms * (0.4 + 0.3 * a + 0.3 * f)
        rows.append(table_row(SubnetSpec(n, a, f), max(1, round(2 * a)), int(128 * f), tpot=t, ttft=4 * t, peak_mem_mb=100.0 + 10 * n))
    return profile_table(rows, model={**TINY_MODEL_FACTS, "num_layers": layers}, engine=engine, workload=workload)


def affine_table(info: Any, space: Any, *, engine: str = "torch", workload: str = "b1-p16-g8", scale: float = 1.0) -> dict[str, Any]:
    """A profile table over every shape of ``space`` (a ``ShapeSpace``) for the model ``info`` (a ``ModelInfo``)
    whose latencies follow DESIGN §5's affine law (decode: a + L·(b + c·attn + d·MLP))."""
    from core.strategy.units import kept_ffn_channels, kept_kv_groups

    rows = []
    for s in space:
        kv, ffn = kept_kv_groups(info, s.attn_width), kept_ffn_channels(info, s.ffn_width)
        per = 0.2 + 0.3 * kv / info.num_kv_heads + 0.5 * ffn / info.intermediate_size
        rows.append(table_row(s, kv, ffn, tpot=scale * (0.5 + s.num_layers * per), ttft=scale * (2.0 + 6 * s.num_layers * per),
                              peak_mem_mb=50.0 + 10 * s.num_layers * per))
    facts = {k: getattr(info, k) for k in TINY_MODEL_FACTS}
    return profile_table(rows, model=facts, engine=engine, workload=workload)


def write_table(path: Path, doc: dict[str, Any]) -> Path:
    """Save a profile table document as JSON at ``path`` (returned)."""
    import json

    path.write_text(json.dumps(doc))
    return path


# ---- tiny checkpoints ---------------------------------------------------------------------------------------------

EVAL_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "eval"


def tiny_checkpoint(root: Path, *, name: str = "tiny-base", layers: int = 4, min_layers: int = 2, widths: tuple[float, ...] = (1.0, 0.5),
                    seed: int = 0, tokenizer: bool = False, vocab: int | None = None) -> Path:
    """A saved tiny Llama (``make_tiny``) with a naive ``strategy/`` (an ``open_checkpoint`` input) at ``root/name``.

    ``tokenizer``: a 512-token vocabulary with the fixture tokenizer and a ``calibration.txt`` (WikiText-2 sample);
    otherwise ``vocab`` tokens (default 97) and no tokenizer.
    """
    import shutil

    from core.model.loader import ModelInfo, weights_sha256
    from core.strategy.schema import naive_strategy
    from tests.conftest import make_tiny

    d = Path(root) / name
    m = make_tiny("llama", layers=layers, seed=seed, vocab=512 if tokenizer else vocab or 97)
    m.save_pretrained(str(d))
    if tokenizer:
        for f in (EVAL_FIXTURES / "tokenizer").iterdir():
            shutil.copy(f, d / f.name)
        shutil.copy(EVAL_FIXTURES / "data" / "wikitext2" / "wiki.test.raw", d / "calibration.txt")
    naive_strategy(ModelInfo.from_config(m.config), weights_sha256(d), min_layers, widths).save(d / "strategy")
    return d


# ---- a real server process ------------------------------------------------------------------------------------------

#: ``amoeba`` in a fresh interpreter
AMOEBA = [sys.executable, "-c", "from cli.app import main; main()"]
ADMIN_TOKEN = "admin-secret-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a server under ``tmp/var`` (no inherited ``AMOEBA_*`` but the data directory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOEBA_") or k == "AMOEBA_DATA_DIR"}
    env.update({"AMOEBA_VAR_DIR": str(tmp / "var"), "AMOEBA_ADMIN_TOKEN": ADMIN_TOKEN, "OMP_NUM_THREADS": "1", **extra})
    return env


class LiveServer:
    """``amoeba serve`` (real uvicorn) on a tiny tokenized checkpoint with a migrated SQLite database under ``tmp``."""

    def __init__(self, tmp: Path, *, poll_s: str = "0.2", **env: str) -> None:
        from tests.server.conftest import add_tokenizer

        self.tmp = tmp
        self.ckpt = tiny_checkpoint(tmp)
        calib = add_tokenizer(self.ckpt)
        self.db_url = f"sqlite:///{tmp / 'var' / 'amoeba.db'}"
        self.env = server_env(tmp, AMOEBA_CHECKPOINT=str(self.ckpt), AMOEBA_CALIB_TEXT=str(calib), AMOEBA_CALIB_WINDOW="16",
                              AMOEBA_CALIB_MAX_WINDOWS="2", AMOEBA_WORKER_POLL_S=poll_s, AMOEBA_DATABASE_URL=self.db_url, **env)
        up = subprocess.run([*AMOEBA, "db", "upgrade"], env=self.env, capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stderr
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, *, ready: str = "/readyz", timeout_s: float = 180) -> str:
        """Start the process and wait until ``ready`` answers 200; returns the base URL."""
        import httpx

        port = free_port()
        self.log_path = self.tmp / f"server-{port}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([*AMOEBA, "serve", "--no-bootstrap", "--port", str(port)], env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.time() + timeout_s
        while True:
            assert self.proc.poll() is None, self.log()
            try:
                if httpx.get(f"{self.url}{ready}", timeout=2).status_code == 200:
                    return self.url
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "server did not become ready"
            time.sleep(0.1)

    def log(self) -> str:
        """What the process wrote to stdout / stderr (empty before ``start``)."""
        return self.log_path.read_text(errors="replace") if self.proc is not None else ""

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
            self._log.close()


@contextmanager
def live_server(tmp: Path, **env: str) -> Iterator[LiveServer]:
    """A started ``LiveServer``, stopped afterwards."""
    server = LiveServer(tmp, **env)
    try:
        server.start()
        yield server
    finally:
        server.stop()
