"""Profile uploads: validate with the profilers' table model, store in one transaction, queue a refit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import ConfigError
from core.search.pipeline import ModelFingerprint, check_model
from profilers.table import ProfileTable, parse_table
from server.db.models import Device, Profile, ProfileRow
from server.errors import Conflict, Invalid
from server.services import jobs
from server.services.devices import authenticate_device, get_or_create_engine, get_or_create_workload

if TYPE_CHECKING:
    from server.db.session import Database
    from server.runtime import ModelIdentity

REFIT = "refit"


def parse_strict(body: bytes | str | dict[str, Any] | ProfileTable) -> ProfileTable:
    """``profilers.table.parse_table`` in pydantic's strict mode: no string→number coercion (JSON arrays stay
    fine for tuples); ``TableError`` (→ 422) naming the field."""
    import json

    from pydantic import ValidationError

    from profilers.errors import TableError
    from profilers.table import SCHEMA_VERSION, format_validation_error

    if isinstance(body, ProfileTable):
        return body
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TableError(f"invalid profile table: not JSON ({e})") from None
    if not isinstance(body, dict):
        raise TableError("invalid profile table: the top level must be a JSON object")
    if body.get("schema_version") != SCHEMA_VERSION:
        raise TableError(f"invalid profile table: schema_version: expected {SCHEMA_VERSION}, got {body.get('schema_version')!r}")
    try:
        return ProfileTable.model_validate_json(json.dumps(body, allow_nan=False), strict=True)
    except ValidationError as e:
        raise TableError(format_validation_error(e)) from None
    except ValueError as e:  # non-finite numbers (the HTTP layer refuses them earlier)
        raise TableError(f"invalid profile table: {e}") from None


def table_fingerprint(table: ProfileTable) -> ModelFingerprint:
    """The model a table was measured for; its config hash counts only for config-built shapes (an exported
    subnet's config is the subnet's, not the base model's)."""
    m = table.model
    return ModelFingerprint.of(m, m.config_sha256 if m.source == "config" else None)


def check_table(table: ProfileTable, identity: ModelIdentity) -> ModelFingerprint:
    """Refuse a table of another model (``ModelMismatch`` → 409) or with a shape outside the checkpoint's space (→ 422)."""
    fp = table_fingerprint(table)
    check_model(fp, identity.fingerprint, "this profile table")
    for i, r in enumerate(table.rows):
        try:
            identity.space.validate(r.spec)
        except ConfigError as e:
            raise Invalid(f"rows.{i}.shape: {e} (the served checkpoint's shape space)", field=f"rows.{i}.shape") from None
    return fp


def upload_profile(db: Database, name: str, authorization: str | None, body: bytes | str | dict[str, Any],
                   identity: ModelIdentity) -> tuple[Profile, bool]:
    """Authenticate the device, validate the table against the served model and store it (one transaction).

    401/404 before the body is looked at; 422 / 409 before anything is written. Concurrent uploads of the same
    table: the loser's unique-constraint error is retried as a lookup and answered as the duplicate (200).
    """
    for attempt in range(3):
        try:
            with db.session() as s:
                dev = authenticate_device(s, name, authorization)
                prof, created = ingest_profile(s, dev, body, identity)
                _ = prof.engine.name, prof.workload.key  # loaded before the session closes
                return prof, created
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def ingest_profile(s: Session, device: Device, body: bytes | str | dict[str, Any] | ProfileTable, identity: ModelIdentity | None) -> tuple[Profile, bool]:
    """Store an uploaded table for ``device``; returns ``(profile, created)``. Idempotent on content hash.

    Raises ``TableError`` (→ 422, naming the field), ``ModelMismatch`` or ``Invalid`` before anything is written;
    the caller's transaction covers the profile, its rows and the refit job, so an error stores nothing.
    ``identity`` is the served checkpoint (``None``: no model check, e.g. the first-start profile of its own model).
    """
    table = parse_strict(body)
    fp = check_table(table, identity) if identity is not None else table_fingerprint(table)
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
        model_dims=fp.dims,
        model_config_sha256=fp.config_sha256,
        checkpoint_sha256=identity.checkpoint_sha256 if identity is not None else None,
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


def profile_table(p: Profile) -> ProfileTable:
    """The stored document as a validated table again."""
    return parse_table(p.document)
