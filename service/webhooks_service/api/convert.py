"""Proto <-> domain conversions of the admin API, in one place.

The servicers (``api/admin.py``, ``api/operations.py``) call these; enum
values map by name onto the domain's enums (``Outcome``, ``DeliveryStatus``),
so no vocabulary is re-listed here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from webhooks.v1 import admin_pb2
from webhooks_service.core import configs, endpoint_headers, event_types, logs, redelivery
from webhooks_service.core.ids import PublicIds
from webhooks_service.domain import (
    DeliveryStatus,
    Outcome,
    SigningScheme,
    StatusClass,
    VerificationStatus,
    previous_secret_signs,
    utcnow,
)
from webhooks_service.errors import FieldViolation, InvalidArgument
from webhooks_service.signing_keys import kid
from webhooks_service.storage.endpoint_health import EndpointHealth

__all__ = [
    "config_to_proto",
    "delivery_to_proto",
    "event_type_to_proto",
    "health_to_proto",
    "log_to_proto",
    "optional_time",
    "outcome_from_proto",
    "outcome_to_proto",
    "replay_outcomes_from_proto",
    "signing_scheme_from_proto",
    "signing_scheme_to_proto",
    "status_class_from_proto",
    "struct",
    "timestamp",
    "view_is_full",
]


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def outcome_to_proto(outcome: str) -> admin_pb2.Outcome.ValueType:
    return admin_pb2.Outcome.Value("OUTCOME_" + Outcome(outcome).name)


def outcome_from_proto(value: int) -> str:
    """The stored outcome for a filter value; "" for unspecified."""
    if value == admin_pb2.OUTCOME_UNSPECIFIED:
        return ""
    try:
        return admin_pb2.Outcome.Name(value).removeprefix("OUTCOME_").lower()  # type: ignore[arg-type]
    except ValueError as exc:
        raise InvalidArgument(
            "invalid outcome filter", [FieldViolation("outcome", f"unknown value {value}")]
        ) from exc


def view_is_full(value: int) -> bool:
    """DELIVERY_LOG_VIEW_BASIC -> False; FULL or unspecified (the default) -> True."""
    if value == admin_pb2.DELIVERY_LOG_VIEW_BASIC:
        return False
    if value in (admin_pb2.DELIVERY_LOG_VIEW_FULL, admin_pb2.DELIVERY_LOG_VIEW_UNSPECIFIED):
        return True
    raise InvalidArgument(
        "invalid view", [FieldViolation("view", f"unknown value {value}; BASIC or FULL")]
    )


def signing_scheme_to_proto(scheme: str) -> admin_pb2.SigningScheme.ValueType:
    return admin_pb2.SigningScheme.Value("SIGNING_SCHEME_" + SigningScheme(scheme).name)


def signing_scheme_from_proto(value: int) -> SigningScheme | None:
    """The scheme asked for; None for UNSPECIFIED (keep the current one)."""
    if value == admin_pb2.SIGNING_SCHEME_UNSPECIFIED:
        return None
    try:
        name = admin_pb2.SigningScheme.Name(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InvalidArgument(
            "invalid signing scheme",
            [
                FieldViolation(
                    "signing_scheme",
                    f"unknown value {value}; SIGNING_SCHEME_HMAC_SHA256 or SIGNING_SCHEME_ED25519",
                )
            ],
        ) from exc
    return SigningScheme[name.removeprefix("SIGNING_SCHEME_")]


def verification_to_proto(status: str) -> admin_pb2.VerificationStatus.ValueType:
    return admin_pb2.VerificationStatus.Value(
        "VERIFICATION_STATUS_" + VerificationStatus(status).name
    )


def _signing_fields(row: configs.ConfigRow) -> dict[str, Any]:
    """The signing scheme, public keys and verification state of a config."""
    fields: dict[str, Any] = {
        "signing_scheme": signing_scheme_to_proto(row.signing_scheme),
        "public_key": row.public_key or "",
        "public_key_id": kid(row.public_key) if row.public_key else "",
        "verification_status": verification_to_proto(row.verification_status),
        "verification_error": row.verification_error,
    }
    expires = row.previous_secret_expires_at
    if expires is not None and previous_secret_signs(expires, utcnow()):
        fields["previous_key_expires_at"] = timestamp(expires)
        fields["previous_public_key"] = row.previous_public_key or ""
    if row.verified_at is not None:
        fields["verified_at"] = timestamp(row.verified_at)
    return fields


def config_to_proto(row: configs.ConfigRow) -> admin_pb2.WebhookConfig:
    return admin_pb2.WebhookConfig(
        id=row.id,
        url=row.url,
        event_types=list(row.event_types),
        enabled=row.enabled,
        description=row.description,
        # ed25519: a hint of the public key, never of the private one.
        secret_hint=configs.secret_hint(row.public_key or row.secret),
        **_signing_fields(row),
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        disabled_reason=row.disabled_reason,
        health=health_to_proto(row.health),
        # Rows from core/configs carry their headers opened: names only, never values.
        header_names=endpoint_headers.header_names(row.headers, str),
        ordered=row.ordered,
        filter=row.filter,
    )


def health_to_proto(h: EndpointHealth) -> admin_pb2.EndpointHealth:
    out = admin_pb2.EndpointHealth(
        attempts=h.attempts, successes=h.successes, failures=h.failures, last_error=h.last_error
    )
    for name, value in (
        ("last_success_at", h.last_success_at),
        ("last_error_at", h.last_error_at),
        ("failing_since", h.failing_since),
    ):
        if value is not None:
            getattr(out, name).CopyFrom(timestamp(value))
    return out


def log_to_proto(row: logs.LogRow, ids: PublicIds) -> admin_pb2.DeliveryLog:
    """One log entry; ``ids`` turns the integer keys into the opaque public ids."""
    entry = admin_pb2.DeliveryLog(
        id=ids.attempt(row.id),
        event_id=row.event_id,
        event_type=row.event_type,
        config_id=row.config_id,
        delivery_id=ids.delivery(row.delivery_id),
        attempt=row.attempt,
        url=row.url,
        request_body=row.request_body,
        response_status_code=row.response_status_code,
        response_body=row.response_body,
        response_body_truncated=row.response_body_truncated,
        error=row.error,
        duration_ms=row.duration_ms,
        outcome=outcome_to_proto(row.outcome),
        attempted_at=timestamp(row.attempted_at),
        ordering_key=row.ordering_key or "",
        sequence=row.sequence or 0,
        request_headers=[admin_pb2.HttpHeader(name=n, value=v) for n, v in row.request_headers],
        response_headers=[admin_pb2.HttpHeader(name=n, value=v) for n, v in row.response_headers],
        response_headers_truncated=row.response_headers_truncated,
        endpoint_deleted=row.endpoint_deleted,
    )
    if row.next_attempt_at is not None:
        entry.next_attempt_at.CopyFrom(timestamp(row.next_attempt_at))
    return entry


def status_class_from_proto(value: int) -> str:
    """The domain StatusClass value of a filter; "" for unspecified."""
    if value == admin_pb2.STATUS_CLASS_UNSPECIFIED:
        return ""
    try:
        name = admin_pb2.StatusClass.Name(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InvalidArgument(
            "invalid status_class filter",
            [FieldViolation("status_class", f"unknown value {value}")],
        ) from exc
    return StatusClass(name.removeprefix("STATUS_CLASS_").lower()).value


def optional_time(message: Any, field: str) -> datetime | None:
    """A Timestamp field of a request as an aware UTC datetime; None when unset."""
    if not message.HasField(field):
        return None
    value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return value


def delivery_to_proto(state: redelivery.DeliveryState, ids: PublicIds) -> admin_pb2.Delivery:
    message = admin_pb2.Delivery(
        id=ids.delivery(state.id),
        event_id=state.event_id,
        event_type=state.event_type,
        config_id=state.config_id,
        status=admin_pb2.DeliveryStatus.Value(
            "DELIVERY_STATUS_" + DeliveryStatus(state.status).name
        ),
        attempts=state.attempts,
        ordering_key=state.ordering_key or "",
        sequence=state.sequence or 0,
        waiting_for_turn=state.waiting_for_turn,
    )
    if state.status is DeliveryStatus.PENDING and not state.waiting_for_turn:
        message.next_attempt_at.CopyFrom(timestamp(state.next_attempt_at))
    return message


def replay_outcomes_from_proto(values: list[int]) -> list[str]:
    """Outcome enum values as stored statuses; anything but failed/dead is named as invalid."""
    replayable = {admin_pb2.Outcome.Value("OUTCOME_" + s.name): s for s in redelivery.REPLAYABLE}
    result: list[str] = []
    for i, value in enumerate(values):
        status = replayable.get(value)  # type: ignore[call-overload]
        if status is None:
            raise InvalidArgument(
                "invalid ReplayDeliveries request",
                [
                    FieldViolation(
                        f"outcomes[{i}]", "only OUTCOME_FAILED and OUTCOME_DEAD can be replayed"
                    )
                ],
            )
        result.append(status.value)
    return result


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def event_type_to_proto(info: event_types.EventTypeInfo) -> admin_pb2.EventTypeDefinition:
    return admin_pb2.EventTypeDefinition(
        name=info.name,
        category=info.category,
        description=info.description,
        schema=struct(info.schema),
        example=struct(info.example),
    )
