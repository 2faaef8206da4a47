"""Service-level domain errors; ONE exception handler in ``server.app`` maps them (and core's) to HTTP."""

from __future__ import annotations

from core.errors import AmoebaError


class ServiceError(AmoebaError):
    """Base of the errors the service raises on purpose."""


class NotFound(ServiceError):
    """An addressed resource (device, engine, workload, subnet) does not exist → 404."""


class Unauthorized(ServiceError):
    """Missing or wrong credentials → 401."""


class Conflict(ServiceError):
    """The resource already exists → 409."""


class Invalid(ServiceError):
    """A request body is invalid; ``field`` names the bad field → 422."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Infeasible(ServiceError):
    """No shape meets the budget → 422 with the fastest achievable latency."""

    def __init__(self, message: str, detail: dict[str, object]) -> None:
        super().__init__(message)
        self.detail = detail


class CommitsWork(Exception):
    """Marker: an error raised after queuing work that must be kept (the transaction commits, then it propagates)."""


class NotReady(CommitsWork, ServiceError):
    """The result is being built outside the request (its job was queued) → 202 (or 503) with Retry-After."""

    def __init__(self, message: str, retry_after_s: int = 2, status: str = "pending", http_status: int = 202) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.status = status
        self.http_status = http_status


class DatabaseNotMigrated(ServiceError):
    """The database schema is not at the head revision; the server refuses to start."""


class BuildFailed(ServiceError):
    """Building an artifact failed after its retries → 500 with the stored error."""
