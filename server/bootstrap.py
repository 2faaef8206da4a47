"""What ``amoeba serve`` does before serving: migrate, make the admin secret, profile this machine once.

The first profile is adaptive (``profilers.agent.first_start_profile``): a small space-filling design over the
checkpoint's shape space, fitted, then the shapes the cross-validated fit is least sure about, until the held-out
error target is met or ``AMOEBA_BOOTSTRAP_BUDGET_S`` is spent (``AMOEBA_BOOTSTRAP_*``), so the embedded default is
up in about a minute; upload a fuller table later with the agent.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from core.errors import DataMissingError
from server.db.migrate import require_migrated, upgrade
from server.db.models import Device, Profile
from server.db.session import Database
from server.services.admin import ensure_admin_secret
from server.services.devices import create_device, get_or_create_engine, get_or_create_workload
from server.services.profiles import ingest_profile
from server.settings import Settings

if TYPE_CHECKING:
    from core.spec import ShapeSpace
    from profilers.adaptive import Step
    from profilers.base import Profiler
    from profilers.source import ModelSource
    from profilers.table import ProfileRow, ProfileTable
    from profilers.workload import Workload

OnShape = Callable[[int, int, str], None]
"""(done, total, description) after each measured shape."""


@dataclass(frozen=True)
class Prepared:
    """What the operator must be told once: a generated admin token / device token (else ``None``)."""

    admin_token: str | None
    device: str | None = None
    device_token: str | None = None
    profiled_shapes: int = 0


def base_model_dir(checkpoint: Path) -> Path:
    """The base model directory of a checkpoint (itself for a base model with ``strategy/``)."""
    from core.checkpoint import CHECKPOINT_FILE, resolve_base

    doc = checkpoint / CHECKPOINT_FILE
    if doc.is_file():
        return resolve_base(str(json.loads(doc.read_text())["base"]["path"]))
    if not (checkpoint / "config.json").is_file():
        raise DataMissingError(f"checkpoint not found at {checkpoint}: set AMOEBA_CHECKPOINT (a checkpoint or a base model with strategy/)")
    return checkpoint


def local_device_name(settings: Settings) -> str:
    name = settings.bootstrap_device or re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "local"
    return name[:128]


def profile_local_device(db: Database, settings: Settings, on_shape: OnShape | None = None) -> tuple[str, str | None, int]:
    """Register this machine (if new) and profile it on the bootstrap engine/workload if it has no such profile.

    Returns (device name, its token if it was just created, number of shapes measured).
    """
    from core.strategy.schema import Strategy
    from profilers.base import MeasureSettings
    from profilers.registry import get_profiler
    from profilers.source import ModelSource
    from profilers.workload import Workload
    from server.runtime import read_identity

    name, token = local_device_name(settings), None
    wl = Workload.parse(settings.bootstrap_workload)
    with db.session() as s:
        dev = s.scalar(select(Device).where(Device.name == name))
        if dev is None:
            dev, token = create_device(s, name, {"local": True})
        eng, wrk = get_or_create_engine(s, settings.bootstrap_engine), get_or_create_workload(s, wl.key)
        q = select(Profile.id).where(Profile.device_id == dev.id, Profile.engine_id == eng.id, Profile.workload_id == wrk.id)
        if s.scalar(q) is not None:
            return name, token, 0
    ckpt = settings.checkpoint_path()
    strategy = Strategy.load(ckpt / "strategy")
    # as an export of this checkpoint: its compensation biases, attention unit and both of its ladders
    src = ModelSource.open(base_model_dir(ckpt), bias_modules=strategy.bias_modules, attn_unit=strategy.attn_unit)
    profiler = get_profiler(settings.bootstrap_engine, MeasureSettings(warmup=1, repetitions=settings.bootstrap_repetitions,
                                                                        threads=settings.torch_threads))
    table = measure_space(profiler, src, strategy.space, wl, settings, name, on_shape)
    with db.session() as s:
        dev = s.scalar(select(Device).where(Device.name == name))
        assert dev is not None
        dev.hardware = {"local": True, "cpu_model": table.device.cpu_model, "cpu_count": table.device.cpu_count, "os": table.device.os}
        ingest_profile(s, dev, table.model_dump(mode="json"), read_identity(ckpt))
    return name, token, len(table.rows)


def measure_space(profiler: Profiler, source: ModelSource, space: ShapeSpace, workload: Workload, settings: Settings, device_name: str,
                  on_shape: OnShape | None = None) -> ProfileTable:
    """The first-start table of ``space``: adaptive within ``settings.bootstrap_budget_s`` / ``bootstrap_max_shapes``
    (every shape lies in the checkpoint's space); a space too small for adaptive profiling is measured whole.

    ``on_shape(done, total, key)`` after each batch's shapes, ``total`` = the most shapes it may measure.
    """
    from profilers.agent import first_start_profile, run_profile

    specs = list(space)
    total = min(len(specs), settings.bootstrap_max_shapes or len(specs))
    done = [0]

    def on_row(i: int, row: ProfileRow) -> None:
        if on_shape is not None:
            on_shape(i + 1, len(specs), row.shape)

    if total < 6:  # below the predictor's minimum: no fit to guide a choice
        return run_profile(profiler, source, specs, workload, device_name=device_name, command="amoeba serve (first-start profile, full space)",
                           on_row=on_row)

    def on_step(step: Step) -> None:
        for key in step.added:
            done[0] += 1
            if on_shape is not None:
                on_shape(done[0], total, key)

    return first_start_profile(profiler, source, space, workload, budget_s=settings.bootstrap_budget_s, max_shapes=settings.bootstrap_max_shapes,
                               device_name=device_name, on_step=on_step)


def prepare(settings: Settings, *, migrate: bool, bootstrap: bool, on_shape: OnShape | None = None) -> Prepared:
    """Migrate (if asked), check the schema, make the admin secret, and profile this machine (if asked)."""
    url = settings.db_url()
    if migrate:
        upgrade(url)
    db = Database(url)
    try:
        require_migrated(db.engine)
        admin_token = ensure_admin_secret(db, settings)
        if not bootstrap:
            return Prepared(admin_token)
        name, token, n = profile_local_device(db, settings, on_shape)
        return Prepared(admin_token, name, token, n)
    finally:
        db.dispose()
