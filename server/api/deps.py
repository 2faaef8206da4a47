"""FastAPI dependencies: the app state and admin authentication.

Routes open their transaction explicitly (``with state.db.session()``) so it commits before the response.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from server.auth import check_admin
from server.state import AppState


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.amoeba
    return state


State = Annotated[AppState, Depends(get_state)]


AuthHeader = Annotated[str | None, Header(alias="Authorization", include_in_schema=False)]


def require_admin(state: State, authorization: AuthHeader = None) -> None:
    check_admin(authorization, state.settings.admin_user, state.admin_hash)


Admin = Depends(require_admin)
