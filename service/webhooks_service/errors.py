"""The service's exception tree. Foreign errors (SQLAlchemy, httpx, aiohttp)
are translated into these at one boundary each, with ``raise … from exc``;
``api/errors.py`` is the one place that maps them to gRPC status codes."""

from __future__ import annotations

from dataclasses import dataclass


class WebhooksError(Exception):
    """Base of every error the service raises on purpose."""


class ConfigurationError(WebhooksError):
    """Bad operator configuration (database URL, listen address, …)."""


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class InvalidArgument(WebhooksError):
    """A client's request is malformed; ``violations`` name the fields."""

    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.violations: list[FieldViolation] = violations or []


class NotFound(WebhooksError):
    """The resource does not exist, or belongs to another organisation."""


class AlreadyExists(WebhooksError):
    pass


class FailedPrecondition(WebhooksError):
    """The request is valid but the current state forbids it (e.g. a quota)."""


class Unauthenticated(WebhooksError):
    pass


class PermissionDenied(WebhooksError):
    pass


class ResourceExhausted(WebhooksError):
    """Rate limited; ``retry_after`` seconds until a retry may succeed."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(WebhooksError):
    """A dependency (the database) cannot be reached; the client may retry."""


class Conflict(WebhooksError):
    """The request lost to a concurrent change of the same data (gRPC ABORTED):
    the client may read again and retry."""


class DatabaseError(WebhooksError):
    """The database failed a statement or a transaction. Raised by storage only:
    ``storage/errors.py`` maps the driver's exceptions to these at the storage
    edge, ``raise … from`` the original. The message is safe to show a client;
    ``detail`` (the driver's first line) is for the server log. The subclasses
    say what a caller may do; this class itself is a bug or a schema mismatch."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


class DatabaseUnavailable(DatabaseError, Unavailable):
    """The database cannot be reached or used right now (connection refused or
    lost, pool timeout, the server shutting down): the same call may succeed
    later."""


class TransactionConflict(DatabaseUnavailable):
    """The transaction lost to a concurrent one (PostgreSQL deadlock or
    serialization failure, SQLite still busy after its timeout) and was rolled
    back: running it again may succeed."""


class DuplicateKey(DatabaseError, Conflict):
    """A write broke a uniqueness rule: a concurrent writer stored the same key."""


class MissingReference(DatabaseError, NotFound):
    """A write refers to a row that is gone (deleted concurrently)."""
