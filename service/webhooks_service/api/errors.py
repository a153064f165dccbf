"""The one mapping from the service's exceptions to gRPC status.

Code everywhere else raises ``webhooks_service.errors`` exceptions (storage
maps the database driver's to them, ``storage/errors.py``); the auth interceptor calls
:func:`abort_with_error` for anything a servicer raises. The client gets a
``google.rpc.Status`` (code, message, details) in the
``grpc-status-details-bin`` trailer, which is what the Envoy gateway turns
into the JSON error envelope:

- InvalidArgument -> INVALID_ARGUMENT with ``google.rpc.BadRequest`` field
  violations (one per offending field, named as in the proto);
- ResourceExhausted -> RESOURCE_EXHAUSTED with ``google.rpc.RetryInfo`` and a
  ``retry-after`` metadata entry (whole seconds; HTTP Retry-After via Envoy);
- the database unreachable, or a transaction lost to a concurrent one ->
  UNAVAILABLE (the client may retry); a concurrent write of the same key ->
  ABORTED; the database's own detail goes to the log only;
- anything unexpected -> INTERNAL with a generic message; the traceback goes
  to the log, never to the client;
- messages and field violations are capped (:data:`MAX_MESSAGE_CHARS`,
  :data:`MAX_VIOLATIONS`) so that an error echoing huge input still fits the
  trailer limits of gRPC clients.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from webhooks_service import errors
from webhooks_service.api.ratelimit import retry_after_header

log = logging.getLogger(__name__)

STATUS_DETAILS_KEY = "grpc-status-details-bin"
RETRY_AFTER_KEY = "retry-after"

_CODES: tuple[tuple[type[errors.WebhooksError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.Conflict, grpc.StatusCode.ABORTED),
    # A configuration problem discovered while serving is the operator's, not
    # the caller's: answer like any other internal failure, but say so.
    (errors.ConfigurationError, grpc.StatusCode.INTERNAL),
)

INTERNAL_MESSAGE = "internal error"
# Messages and details travel in trailers, which gRPC clients refuse above
# 8-16 KiB; a message echoing a megabyte-long id would turn a clean NOT_FOUND
# into an opaque RESOURCE_EXHAUSTED. So both are capped.
MAX_MESSAGE_CHARS = 512
MAX_VIOLATIONS = 20


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, status_pb2.Status]:
    """The gRPC code and ``google.rpc.Status`` (with details) for an exception.

    Unexpected exceptions are logged here with their traceback (with an
    incident id that the generic client message repeats).
    """
    code: grpc.StatusCode | None = None
    message = str(exc)
    details: list[any_pb2.Any] = []
    if isinstance(exc, errors.WebhooksError):
        for cls, mapped in _CODES:
            if isinstance(exc, cls):
                code = mapped
                break
        if isinstance(exc, errors.InvalidArgument) and exc.violations:
            message = _with_violations(message, exc.violations)
            shown = exc.violations[:MAX_VIOLATIONS]
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=_cap(v.field, 128), description=_cap(v.description, 256)
                    )
                    for v in shown
                ]
            )
            if len(exc.violations) > len(shown):
                bad.field_violations.add(
                    field="request",
                    description=f"{len(exc.violations) - len(shown)} more problems not shown",
                )
            details.append(_pack(bad))
        if isinstance(exc, errors.ResourceExhausted) and exc.retry_after is not None:
            seconds = max(0.0, exc.retry_after)
            whole = math.floor(seconds)
            delay = duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))
            details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
        if isinstance(exc, errors.ConfigurationError):
            log.error("configuration error while serving: %s", exc)
        if isinstance(exc, errors.DatabaseError) and code is not None:
            log.warning("database: %s (%s)", exc, exc.detail)
    if code is None:
        incident = uuid.uuid4().hex[:12]
        log.error("unexpected error (incident %s)", incident, exc_info=exc)
        code, message = grpc.StatusCode.INTERNAL, f"{INTERNAL_MESSAGE} (incident {incident})"
    message = _cap(message, MAX_MESSAGE_CHARS)
    status = status_pb2.Status(code=_rpc_code(code), message=message, details=details)
    return code, status


def _with_violations(message: str, violations: list[errors.FieldViolation]) -> str:
    """The message, naming the fields at fault and the first rule broken, for
    clients that show only the message: "invalid page_size" ->
    "invalid ListDeliveryLogs request: page_size must be between 0 and 500 …"."""
    first = violations[0]
    if first.description in message:
        return message
    if message.endswith(first.field):  # "invalid delivery_id" -> "…: <rule>"
        text = f"{message}: {first.description}"
    else:
        text = f"{message}: {first.field}: {first.description}"
    if len(violations) > 1:
        others = ", ".join(dict.fromkeys(v.field for v in violations[1:] if v.field != first.field))
        if others:
            text += f" (also {others})"
    return text


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pack(message: error_details_pb2.BadRequest | error_details_pb2.RetryInfo) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _rpc_code(code: grpc.StatusCode) -> int:
    value: int = code.value[0]
    assert code_pb2.Code.Name(value)  # the two enumerations share numbers
    return value


async def abort_with_error(
    context: grpc.aio.ServicerContext[object, object], exc: BaseException
) -> NoReturn:
    """End the call with the status for ``exc`` (details in the trailer)."""
    code, status = to_status(exc)
    metadata: tuple[tuple[str, str | bytes], ...] = (
        (STATUS_DETAILS_KEY, status.SerializeToString()),
    )
    if isinstance(exc, errors.ResourceExhausted) and exc.retry_after is not None:
        # The gateway passes this through as the HTTP Retry-After of its 429.
        metadata += ((RETRY_AFTER_KEY, retry_after_header(exc.retry_after)),)
    await context.abort(code, status.message, trailing_metadata=metadata)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover
