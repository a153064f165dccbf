"""The client's exception tree: one class per gRPC status the service uses.

Every error carries the gRPC ``code``, the server's ``message`` and, when the
server sent a ``google.rpc.Status`` in the ``grpc-status-details-bin``
trailer, the parsed details: ``field_violations`` (from
``google.rpc.BadRequest``: which request field is wrong and why) and
``retry_after`` seconds (from ``google.rpc.RetryInfo``).

    try:
        admin.put_webhook_config(url="ftp://x", event_types=["*"])
    except InvalidArgumentError as err:
        for v in err.field_violations:
            print(v.field, v.description)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field: ``field`` as named in the proto (``event_types[1]``)."""

    field: str
    description: str


class WebhooksClientError(Exception):
    """Base of every error the client raises for a failed call."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        field_violations: tuple[FieldViolation, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field_violations = field_violations
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        untold = [v for v in self.field_violations if v.description not in self.message]
        if untold:
            text += " (" + "; ".join(f"{v.field}: {v.description}" for v in untold) + ")"
        return text


class InvalidArgumentError(WebhooksClientError):
    """The request is malformed; see ``field_violations``."""


class NotFoundError(WebhooksClientError):
    """No such resource in the caller's organisation."""


class AlreadyExistsError(WebhooksClientError):
    pass


class FailedPreconditionError(WebhooksClientError):
    """Valid request, but the current state forbids it (e.g. the config quota)."""


class UnauthenticatedError(WebhooksClientError):
    """Missing, unknown or revoked API key."""


class PermissionDeniedError(WebhooksClientError):
    """The API key lacks the scope, or acts on another organisation."""


class RateLimitedError(WebhooksClientError):
    """RESOURCE_EXHAUSTED: slow down; ``retry_after`` seconds when the server said."""


class UnavailableError(WebhooksClientError):
    """The service or its database cannot be reached; retrying later may succeed."""


class DeadlineExceededError(WebhooksClientError):
    """The call's timeout passed before the answer arrived."""


class InternalError(WebhooksClientError):
    """The server failed unexpectedly (the message holds an incident id)."""


_BY_CODE: dict[grpc.StatusCode, type[WebhooksClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimitedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.INTERNAL: InternalError,
}


def _status_details(err: grpc.Call | grpc.aio.AioRpcError) -> status_pb2.Status | None:
    for key, value in err.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except Exception:  # a malformed trailer must not hide the error itself
                return None
            return status
    return None


# (the stubs type descriptors as a union mypy cannot pass to Any.Is)
_BAD_REQUEST: Any = error_details_pb2.BadRequest.DESCRIPTOR
_RETRY_INFO: Any = error_details_pb2.RetryInfo.DESCRIPTOR


def from_rpc_error(err: grpc.RpcError) -> WebhooksClientError:
    """The client exception for a failed gRPC call (details parsed when present)."""
    # grpc.Call for blocking calls; grpc.aio.AioRpcError (not a grpc.Call, same methods)
    # for asyncio ones.
    if not isinstance(err, grpc.Call | grpc.aio.AioRpcError):
        return WebhooksClientError(grpc.StatusCode.UNKNOWN, str(err))
    code = err.code()
    message = err.details() or code.name
    violations: list[FieldViolation] = []
    retry_after: float | None = None
    status = _status_details(err)
    if status is not None:
        for detail in status.details:
            if detail.Is(_BAD_REQUEST):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
            elif detail.Is(_RETRY_INFO):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                retry_after = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    cls = _BY_CODE.get(code, WebhooksClientError)
    return cls(code, message, tuple(violations), retry_after)
