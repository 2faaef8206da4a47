"""FastAPI dependencies: the app state and admin authentication.

Routes open their transaction explicitly (``with state.db.session()``) so it commits before the response.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPBasic, HTTPBearer

from server.auth import check_admin
from server.state import AppState


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.amoeba
    return state


State = Annotated[AppState, Depends(get_state)]


AuthHeader = Annotated[str | None, Header(alias="Authorization", include_in_schema=False)]
# Declared for the OpenAPI document (security schemes); the checks read the raw header.
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="token", description="device token (profile uploads) or the admin token")
basic_scheme = HTTPBasic(auto_error=False, scheme_name="admin-basic", description="admin user and the admin token as password")


def require_admin(state: State, authorization: AuthHeader = None, _bearer: object = Security(bearer_scheme),
                  _basic: object = Security(basic_scheme)) -> None:
    check_admin(authorization, state.settings.admin_user, state.admin_hash)


DeviceAuth = Security(bearer_scheme)


Admin = Depends(require_admin)
