"""Per-app state (no globals): settings, database, admin verifier, checkpoint runtime, accuracy, job worker, search."""

from __future__ import annotations

from dataclasses import dataclass

from server.db.session import Database
from server.runtime import Runtime
from server.services.accuracy import AccuracyService
from server.services.search import SearchService
from server.services.search_log import SearchLog
from server.settings import Settings
from server.worker import JobWorker


@dataclass
class AppState:
    settings: Settings
    db: Database
    admin_hash: str
    runtime: Runtime
    accuracy: AccuracyService
    worker: JobWorker
    search_log: SearchLog
    search: SearchService
