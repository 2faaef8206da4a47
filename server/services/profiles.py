"""Profile uploads: validate with the profilers' table model, store in one transaction, queue a refit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from profilers.table import ProfileTable, parse_table
from server.db.models import Device, Engine, Profile, ProfileRow, Workload
from server.errors import Conflict
from server.services import jobs
from server.services.devices import get_or_create_engine, get_or_create_workload

REFIT = "refit"


def ingest_profile(s: Session, device: Device, body: bytes | str | dict[str, Any]) -> tuple[Profile, bool]:
    """Store an uploaded table for ``device``; returns ``(profile, created)``. Idempotent on content hash.

    Raises ``TableError`` (→ 422, naming the field) before anything is written; the caller's transaction
    covers the profile, its rows and the refit job, so an error stores nothing.
    """
    table = parse_table(body)
    sha = table.content_sha256()
    existing = s.scalar(select(Profile).where(Profile.content_sha256 == sha))
    if existing is not None:
        if existing.device_id != device.id:
            raise Conflict(f"this table (sha256 {sha[:12]}…) was already uploaded by another device")
        return existing, False
    engine = get_or_create_engine(s, table.engine.name)
    workload = get_or_create_workload(s, table.workload)
    prof = Profile(
        content_sha256=sha,
        device=device,
        engine=engine,
        workload=workload,
        engine_version=table.engine.version,
        device_facts=table.device.model_dump(mode="json"),
        engine_facts=table.engine.model_dump(mode="json"),
        document=table.model_dump(mode="json"),
        num_rows=len(table.rows),
    )
    prof.rows = [_row(r) for r in table.rows]
    s.add(prof)
    s.flush()
    jobs.enqueue(s, REFIT, f"{REFIT}:{prof.id}", {"profile_id": prof.id})
    return prof, True


def _row(r: Any) -> ProfileRow:
    spec = r.spec
    return ProfileRow(
        shape_key=r.shape,
        num_layers=spec.num_layers,
        attn_width=spec.attn_width,
        ffn_width=spec.ffn_width,
        kv_groups=r.kv_groups,
        ffn_channels=r.ffn_channels,
        ttft_ms=r.ttft_ms.median,
        ttft_p90_ms=r.ttft_ms.p90,
        ttft_std_ms=r.ttft_ms.std,
        tpot_ms=r.tpot_ms.median,
        tpot_p90_ms=r.tpot_ms.p90,
        tpot_std_ms=r.tpot_ms.std,
        repetitions=min(r.ttft_ms.repetitions, r.tpot_ms.repetitions),
        peak_mem_mb=r.peak_mem_mb,
        busy=r.busy,
    )


def latest_profile(s: Session, device: Device, engine: Engine, workload: Workload) -> Profile | None:
    """The newest profile of (device, engine, workload): each upload is a complete table."""
    q = (
        select(Profile)
        .where(Profile.device_id == device.id, Profile.engine_id == engine.id, Profile.workload_id == workload.id)
        .order_by(Profile.id.desc())
        .limit(1)
    )
    return s.scalar(q)


def profile_table(p: Profile) -> ProfileTable:
    """The stored document as a validated table again."""
    return parse_table(p.document)
