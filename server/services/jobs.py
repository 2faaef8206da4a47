"""The job table: enqueue, claim (atomically, safe across threads/processes), finish, requeue after a restart."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models import Job


def enqueue(s: Session, kind: str, key: str, payload: dict[str, Any] | None = None, *, rearm: bool = False) -> Job:
    """Queue a job unless one with ``key`` exists; ``rearm`` puts a finished one back to pending (failed ones stay)."""
    job = s.scalar(select(Job).where(Job.key == key))
    if job is None:
        job = Job(kind=kind, key=key, payload=payload or {}, status="pending", attempts=0)
        s.add(job)
        s.flush()
    elif rearm and job.status == "done":
        job.status, job.attempts, job.error = "pending", 0, None
    return job


def requeue(s: Session, key: str) -> None:
    """Force the job ``key`` back to pending (e.g. its output disappeared)."""
    s.execute(update(Job).where(Job.key == key).values(status="pending", attempts=0, error=None))


def claim(s: Session, kinds: tuple[str, ...] | None = None) -> Job | None:
    """Take the oldest pending job: a conditional UPDATE, so two workers never get the same job."""
    q = select(Job.id).where(Job.status == "pending").order_by(Job.id).limit(8)
    if kinds:
        q = q.where(Job.kind.in_(kinds))
    for job_id in s.scalars(q).all():
        res = s.execute(
            update(Job).where(Job.id == job_id, Job.status == "pending").values(status="running", attempts=Job.attempts + 1, started_at=utcnow())
        )
        if res.rowcount == 1:  # type: ignore[attr-defined]
            s.commit()
            return s.get(Job, job_id, populate_existing=True)
    s.rollback()
    return None


def finish(s: Session, job_id: int, error: str | None, max_attempts: int) -> Job:
    """Mark a job done, or failed/pending again (retry) after an error."""
    job = s.get_one(Job, job_id, populate_existing=True)
    job.finished_at = utcnow()
    if error is None:
        job.status, job.error = "done", None
    else:
        job.error = error[:2000]
        job.status = "pending" if job.attempts < max_attempts else "failed"
    return job


def requeue_interrupted(s: Session) -> int:
    """After a restart: jobs left ``running`` by a dead process go back to pending. Returns how many."""
    res = s.execute(update(Job).where(Job.status == "running").values(status="pending"))
    return int(res.rowcount)  # type: ignore[attr-defined]
