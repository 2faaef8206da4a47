"""Which function runs each job kind (export, refit, accuracy), bound to one app's state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.services.accuracy import ACCURACY
from server.services.artifacts import EXPORT, build_artifact
from server.services.latency import refit
from server.services.profiles import REFIT
from server.worker import Handler

if TYPE_CHECKING:
    from server.state import AppState


def job_handlers(state: AppState) -> dict[str, Handler]:
    def export(payload: dict[str, Any]) -> None:
        build_artifact(state.db, state.runtime, state.settings.artifacts_path(), int(payload["subnet_id"]))

    def do_refit(payload: dict[str, Any]) -> None:
        refit(state.db, int(payload["profile_id"]))
        state.search.invalidate()  # searches resolve to the new fit at once

    def accuracy(_payload: dict[str, Any]) -> None:
        state.accuracy.fill()

    return {EXPORT: export, REFIT: do_refit, ACCURACY: accuracy}
