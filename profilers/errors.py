"""Errors raised by the profilers package (all are ``core.errors.AmoebaError`` so CLIs print one line)."""

from __future__ import annotations

from core.errors import AmoebaError, ConfigError


class TableError(ConfigError):
    """A profile table (or predictor state) is invalid; the message names the field."""


class ProfilerUnavailable(AmoebaError):
    """The engine's runtime is missing on this machine; the message is the reason."""


class MachineBusyError(AmoebaError):
    """Other processes competed for the CPU during a measurement (only raised with ``busy_policy='refuse'``)."""


class UploadError(AmoebaError):
    """Uploading a profile table failed; ``retryable`` tells whether a later retry can succeed."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
