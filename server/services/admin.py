"""The admin secret: ``AMOEBA_ADMIN_TOKEN`` if set, else a generated one whose hash is kept in the database."""

from __future__ import annotations

from sqlalchemy import select

from core.errors import ConfigError
from server.auth import hash_token, new_token
from server.db.models import AdminSecret
from server.db.session import Database
from server.settings import Settings


def ensure_admin_secret(db: Database, settings: Settings) -> str | None:
    """Generate and store (hash only) an admin token when none is configured. Returns it once, else ``None``."""
    if settings.admin_token is not None:
        return None
    with db.session() as s:
        if s.scalar(select(AdminSecret.id).limit(1)) is not None:
            return None
        token = new_token()
        s.add(AdminSecret(token_hash=hash_token(token)))
        return token


def admin_verifier(db: Database, settings: Settings) -> str:
    """The stored verifier of the admin secret; ``ConfigError`` when there is none yet."""
    if settings.admin_token is not None:
        secret = settings.admin_token.get_secret_value()
        if len(secret) < 8:
            raise ConfigError("AMOEBA_ADMIN_TOKEN must be at least 8 characters")
        return hash_token(secret)
    with db.sessions() as s:
        h = s.scalar(select(AdminSecret.token_hash).order_by(AdminSecret.id.desc()).limit(1))
    if h is None:
        raise ConfigError("no admin credentials: set AMOEBA_ADMIN_TOKEN, or start once with `amoeba serve` to generate one")
    return h
