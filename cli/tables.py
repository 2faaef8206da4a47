"""The profile table and latency model of ``amoeba search``: pick one table among files, fit or load its predictor.

Raises ``ConfigError`` naming what is wrong; ``amoeba search`` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.latency import LatencyModel
    from profilers.table import ProfileTable


@dataclass(frozen=True)
class LatencySource:
    """The chosen profile table and the latency model built from it."""

    table: ProfileTable
    model: LatencyModel
    table_sha256: str


def select_table(paths: list[Path], engine: str | None, workload: str | None, device: str | None) -> ProfileTable:
    """The one table among ``paths`` matching the filters; ``ConfigError`` listing the candidates otherwise."""
    from profilers.table import load_table
    from profilers.workload import Workload

    wl = Workload.parse(workload).key if workload is not None else None
    tables = [load_table(p) for p in paths]
    hits = [t for t in tables
            if (engine is None or t.engine.name == engine) and (wl is None or t.workload == wl) and (device is None or t.device.name == device)]
    if len(hits) == 1:
        return hits[0]
    have = ", ".join(f"{t.device.name or '?'}/{t.engine.name}/{t.workload}" for t in tables)
    want = f"engine={engine or '*'} workload={wl or '*'} device={device or '*'}"
    what = "no profile table matches" if not hits else f"{len(hits)} profile tables match"
    raise ConfigError(f"{what} {want} (tables: {have}); narrow it with --engine / --workload / --device")


def latency_source(paths: list[Path], engine: str | None, workload: str | None, device: str | None, predictor: Path | None) -> LatencySource:
    """Select the table and fit (or load) its ``LatencyPredictor``; a loaded predictor must belong to that table."""
    from profilers.predictor.model import LatencyPredictor
    from server.services.latency import fit_predictor

    table = select_table(paths, engine, workload, device)
    sha = table.content_sha256()
    if predictor is None:
        return LatencySource(table, fit_predictor(table)[0], sha)
    pred = LatencyPredictor.load(predictor)
    if pred.state.table_sha256 != sha:
        raise ConfigError(f"predictor {predictor} was fitted on another table (sha256 {pred.state.table_sha256[:12]}…, table {sha[:12]}…)")
    return LatencySource(table, pred, sha)
