"""Tokens and credentials: device tokens (one-time, hash stored) and the admin secret.

Tokens are 256-bit random strings, so a plain sha256 is a sufficient verifier (no password stretching).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets

from server.errors import Unauthorized


def new_token() -> str:
    """A fresh random token (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored verifier of ``token``: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def verify_token(token: str, stored_hash: str) -> bool:
    """Constant-time check of ``token`` against its stored verifier."""
    return secrets.compare_digest(hash_token(token), stored_hash)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; ``Unauthorized`` if absent or malformed."""
    if not authorization:
        raise Unauthorized("missing Authorization header (expected 'Bearer <token>')")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()


def check_admin(authorization: str | None, admin_user: str, admin_hash: str) -> None:
    """Accept ``Bearer <admin token>`` or HTTP Basic ``<admin_user>:<admin token>``; else ``Unauthorized``."""
    if not authorization:
        raise Unauthorized("admin credentials required (Bearer token or HTTP Basic)")
    scheme, _, value = authorization.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        secret = value.strip()
    elif scheme == "basic":
        try:
            user, sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("malformed HTTP Basic credentials") from None
        if not sep or not secrets.compare_digest(user.encode(), admin_user.encode()):
            raise Unauthorized("wrong admin credentials")
    else:
        raise Unauthorized("unsupported Authorization scheme (use Bearer or Basic)")
    if not verify_token(secret, admin_hash):
        raise Unauthorized("wrong admin credentials")
