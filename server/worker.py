"""Background job workers: threads that poll the job table and run the handler of each job's kind.

State lives in the database, so a restart loses nothing: interrupted jobs are requeued at start.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from core.errors import AmoebaError
from server.db.session import Database
from server.services import jobs

Handler = Callable[[dict[str, Any]], None]


class JobWorker:
    """Runs jobs from the table with ``handlers[kind](payload)``; ``run_once`` is the synchronous step."""

    def __init__(self, db: Database, handlers: dict[str, Handler], *, poll_s: float = 0.5, max_attempts: int = 3) -> None:
        self.db = db
        self.handlers = handlers
        self.poll_s = poll_s
        self.max_attempts = max_attempts
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def recover(self) -> int:
        """Requeue jobs a previous process left running."""
        with self.db.session() as s:
            return jobs.requeue_interrupted(s)

    def run_once(self) -> bool:
        """Claim and run one job; False when none is pending."""
        with self.db.sessions() as s:
            job = jobs.claim(s, tuple(self.handlers))
            if job is None:
                return False
            job_id, kind, payload = job.id, job.kind, dict(job.payload)
        error: str | None = None
        try:
            self.handlers[kind](payload)
        except AmoebaError as e:
            error = f"{type(e).__name__}: {e}"
        except Exception as e:  # a worker must survive any job failure; the error is stored on the job
            error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"
        with self.db.session() as s:
            jobs.finish(s, job_id, error, self.max_attempts)
        return True

    def drain(self, max_jobs: int = 1000) -> int:
        """Run jobs until none is pending (tests, CLI). Returns how many ran."""
        n = 0
        while n < max_jobs and self.run_once():
            n += 1
        return n

    def notify(self) -> None:
        """Wake the pollers (a job was just queued)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_once()
            except Exception:  # database hiccup: back off and keep serving
                ran = False
            if not ran:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def start(self, threads: int = 1) -> None:
        self.recover()
        for i in range(threads):
            t = threading.Thread(target=self._loop, name=f"amoeba-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout_s)
        self._threads.clear()
