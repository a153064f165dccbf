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
