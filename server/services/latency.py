"""Latency predictors per (device, engine, workload): fitted by the ``refit`` job, stored as JSON state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from profilers.predictor.model import LatencyPredictor
    from profilers.table import ProfileTable

from server.db.models import Device, Engine, PredictorFit, Profile, Workload
from server.db.session import Database
from server.errors import NotFound
from server.services.profiles import profile_table


def fit_predictor(table: ProfileTable) -> tuple[LatencyPredictor, bool]:
    """The predictor of ``table`` as the service fits it (also ``amoeba search``): rows measured on a busy machine
    are used only when there are too few uncontended ones. Returns (predictor, whether busy rows were used)."""
    from profilers.predictor.model import MIN_ROWS, LatencyPredictor

    busy = sum(r.busy for r in table.rows)
    includes_busy = len(table.rows) - busy < MIN_ROWS <= len(table.rows)
    return LatencyPredictor.fit(table, include_busy=includes_busy), includes_busy


def refit(db: Database, profile_id: int) -> PredictorFit:
    """Fit the predictor on profile ``profile_id`` and store it (the ``refit`` job handler). Idempotent."""
    with db.session() as s:
        prof = s.get(Profile, profile_id)
        if prof is None:
            raise NotFound(f"profile {profile_id} no longer exists")
        existing = s.scalar(select(PredictorFit).where(PredictorFit.profile_id == profile_id))
        if existing is not None:
            return existing
        table = profile_table(prof)
    pred, includes_busy = fit_predictor(table)
    held_out = pred.held_out("tpot_ms")
    with db.session() as s:
        prof = s.get_one(Profile, profile_id)
        fit = PredictorFit(device_id=prof.device_id, engine_id=prof.engine_id, workload_id=prof.workload_id, profile_id=prof.id,
                           state=pred.state.model_dump(mode="json"), mape=held_out.mape_pct / 100.0, within_10pct=held_out.within_10pct,
                           includes_busy=includes_busy)
        s.add(fit)
        s.flush()
        return fit


def latest_fit(s: Session, device: Device, engine: Engine, workload: Workload) -> PredictorFit | None:
    q = (
        select(PredictorFit)
        .where(PredictorFit.device_id == device.id, PredictorFit.engine_id == engine.id, PredictorFit.workload_id == workload.id)
        .order_by(PredictorFit.profile_id.desc())
        .limit(1)
    )
    return s.scalar(q)
