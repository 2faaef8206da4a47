"""Subnets and their artifacts: a tar of the exported HF directory, built once by a worker, then reused.

The archive is streamed in one pass by ``core.export.writer.export_subnet_tar`` (deterministic: sorted names,
zero mtimes/owners; atomic: temp + fsync + rename), so a crash mid-build never leaves a corrupt artifact; the
job table requeues interrupted builds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.spec import SubnetSpec
from server.db.base import utcnow
from server.db.models import Artifact, Job, Subnet
from server.db.session import Database
from server.errors import BuildFailed, NotFound, NotReady
from server.runtime import Runtime
from server.services import jobs

EXPORT = "export"


def get_or_create_subnet(s: Session, checkpoint_sha256: str, spec: SubnetSpec) -> Subnet:
    sub = s.scalar(select(Subnet).where(Subnet.checkpoint_sha256 == checkpoint_sha256, Subnet.shape_key == spec.key))
    if sub is None:
        sub = Subnet(checkpoint_sha256=checkpoint_sha256, shape_key=spec.key, num_layers=spec.num_layers,
                     attn_width=spec.attn_width, ffn_width=spec.ffn_width)
        s.add(sub)
        s.flush()
    return sub


def get_subnet(s: Session, subnet_id: int) -> Subnet:
    sub = s.get(Subnet, subnet_id)
    if sub is None:
        raise NotFound(f"unknown subnet {subnet_id}")
    return sub


def artifact_ready(art: Artifact | None) -> bool:
    return art is not None and art.status == "ready" and art.path is not None and Path(art.path).is_file()


def request_artifact(s: Session, sub: Subnet) -> Artifact:
    """The ready artifact of ``sub``; otherwise queue its build and raise ``NotReady`` (→ 202 + Retry-After)."""
    art = sub.artifact
    if artifact_ready(art):
        assert art is not None
        return art
    job = s.scalar(select(Job).where(Job.key == f"{EXPORT}:{sub.id}"))
    if job is not None and job.status == "failed":
        raise BuildFailed(f"export of subnet {sub.id} ({sub.shape_key}) failed after {job.attempts} attempts: {job.error}")
    if art is None:
        art = Artifact(subnet=sub, status="pending")
        s.add(art)
    elif art.status == "ready":  # the file disappeared: rebuild
        art.status, art.path, art.sha256 = "pending", None, None
        jobs.requeue(s, f"{EXPORT}:{sub.id}")
    jobs.enqueue(s, EXPORT, f"{EXPORT}:{sub.id}", {"subnet_id": sub.id})
    s.flush()
    raise NotReady(f"artifact of subnet {sub.id} ({sub.shape_key}) is {art.status}", retry_after_s=2, status=art.status)


def build_artifact(db: Database, runtime: Runtime, artifact_dir: Path, subnet_id: int) -> Artifact:
    """Export subnet ``subnet_id`` and archive it (the ``export`` job handler). Idempotent."""
    from core.export.writer import export_subnet_tar

    with db.session() as s:
        sub = get_subnet(s, subnet_id)
        art = sub.artifact or Artifact(subnet=sub)
        s.add(art)
        if artifact_ready(art):
            return art
        art.status, art.error = "building", None
        spec, ckpt_sha = SubnetSpec.parse(sub.shape_key), sub.checkpoint_sha256
    ckpt = runtime.checkpoint()
    if ckpt.checkpoint_sha256 != ckpt_sha:
        _fail(db, subnet_id, f"subnet {subnet_id} belongs to checkpoint {ckpt_sha[:12]}…, the service has {str(ckpt.checkpoint_sha256)[:12]}…")
        raise BuildFailed(f"subnet {subnet_id} was made for another checkpoint")
    name = f"amoeba-{ckpt_sha[:12]}-{spec.key}"
    try:
        with runtime.lock:
            res = export_subnet_tar(ckpt.elastic, spec, artifact_dir / f"{name}.tar", name, tokenizer_dir=ckpt.tokenizer_dir,
                                    source={"checkpoint": str(runtime.path), "checkpoint_sha256": ckpt_sha, "subnet_id": subnet_id})
    except BaseException as e:
        _fail(db, subnet_id, f"{type(e).__name__}: {e}")
        raise
    with db.session() as s:
        done = get_subnet(s, subnet_id).artifact
        assert done is not None
        done.status, done.path, done.sha256, done.size_bytes = "ready", str(res.path), res.archive_sha256, res.archive_bytes
        done.manifest_sha256, done.architecture, done.ready_at, done.error = res.sha256, str(res.architecture), utcnow(), None
        return done


def _fail(db: Database, subnet_id: int, error: str) -> None:
    with db.session() as s:
        art = s.scalar(select(Artifact).where(Artifact.subnet_id == subnet_id))
        if art is not None:
            art.status, art.error = "pending", error[:2000]


def clean_stale_builds(artifact_dir: Path) -> None:
    """Remove temp archives a crashed process left behind (and build directories of older versions)."""
    shutil.rmtree(artifact_dir / ".build", ignore_errors=True)
    for p in artifact_dir.glob(".*.tmp"):
        p.unlink(missing_ok=True)
