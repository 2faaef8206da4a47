"""Per-app state (no globals): settings, database, admin verifier, checkpoint runtime, accuracy, job worker."""

from __future__ import annotations

from dataclasses import dataclass

from server.db.session import Database
from server.runtime import Runtime
from server.services.accuracy import AccuracyService
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
