"""The search log, written off the request path: requests enqueue a row, one thread writes batches.

A search answer is a read; writing its log row inside the request made every search a write transaction, and
on SQLite writers serialise (``database is locked`` under load). Here a request only appends to a bounded
in-memory queue; a flusher thread inserts what has accumulated in one transaction every ``interval_s`` (or
when ``batch`` rows are waiting). When the queue is full the request writes its own batch (back-pressure, never
a silent drop). A crash loses at most the last ``interval_s`` of log rows, never an answer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert

from server.db.base import utcnow
from server.db.models import Search
from server.db.session import Database


@dataclass(frozen=True)
class SearchEntry:
    uid: str
    device_id: int
    engine_id: int
    workload_id: int
    request: dict[str, Any]
    answer: dict[str, Any]
    feasible: bool
    subnet_id: int | None
    duration_ms: float
    created_at: datetime = field(default_factory=utcnow)


class SearchLog:
    """Batched writer of ``searches`` rows (``record`` is O(1); ``flush`` writes everything queued)."""

    def __init__(self, db: Database, *, interval_s: float = 0.25, batch: int = 500, max_queue: int = 20_000) -> None:
        self.db, self.interval_s, self.batch, self.max_queue = db, interval_s, batch, max_queue
        self._q: deque[SearchEntry] = deque()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0

    def record(self, entry: SearchEntry) -> None:
        self._q.append(entry)
        if len(self._q) >= self.max_queue:
            self.flush()
        elif len(self._q) >= self.batch:
            self._wake.set()

    def pending(self) -> int:
        return len(self._q)

    def flush(self) -> int:
        """Write every queued row in one transaction; returns how many (rows are re-queued if the write fails)."""
        with self._flush_lock:
            rows: list[SearchEntry] = []
            while self._q:
                rows.append(self._q.popleft())
            if not rows:
                return 0
            try:  # one Core executemany: no ORM unit of work holding the GIL while requests are served
                with self.db.session() as s:
                    s.execute(insert(Search), [{"uid": e.uid, "device_id": e.device_id, "engine_id": e.engine_id, "workload_id": e.workload_id,
                                                "request": e.request, "answer": e.answer, "feasible": e.feasible, "subnet_id": e.subnet_id,
                                                "duration_ms": e.duration_ms, "created_at": e.created_at} for e in rows])
            except Exception:
                self._q.extendleft(reversed(rows))
                raise
            self.written += len(rows)
            return len(rows)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # database hiccup: keep the rows, retry on the next tick
                time.sleep(self.interval_s)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="amoeba-search-log", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        try:
            self.flush()
        except Exception:  # the database is gone at shutdown: the log rows are lost, answers were not
            pass
