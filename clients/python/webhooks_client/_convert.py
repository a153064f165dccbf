"""The one conversion from the generated messages to :mod:`webhooks_client.models`.

Every client (the synchronous ones here, an asyncio one later) builds the
same requests and hands the responses to these functions, so a field added
to the protos is converted in one place.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import json_format, timestamp_pb2

from webhooks.v1 import admin_pb2, publisher_pb2
from webhooks_client import models


def timestamp(message: object, name: str) -> datetime | None:
    """``message.<name>`` as an aware UTC datetime; None when the field is unset."""
    if not message.HasField(name):  # type: ignore[attr-defined]
        return None
    value: timestamp_pb2.Timestamp = getattr(message, name)
    return value.ToDatetime(tzinfo=UTC)


def endpoint_health(h: admin_pb2.EndpointHealth) -> models.EndpointHealth:
    return models.EndpointHealth(
        attempts=h.attempts,
        successes=h.successes,
        failures=h.failures,
        last_success_at=timestamp(h, "last_success_at"),
        last_error=h.last_error,
        last_error_at=timestamp(h, "last_error_at"),
        failing_since=timestamp(h, "failing_since"),
    )


def webhook_config(c: admin_pb2.WebhookConfig) -> models.WebhookConfig:
    return models.WebhookConfig(
        id=c.id,
        url=c.url,
        event_types=tuple(c.event_types),
        enabled=c.enabled,
        description=c.description,
        secret_hint=c.secret_hint,
        created_at=timestamp(c, "created_at"),
        updated_at=timestamp(c, "updated_at"),
        disabled_reason=c.disabled_reason,
        health=endpoint_health(c.health),
        header_names=tuple(c.header_names),
        ordered=c.ordered,
        signing_scheme=models.SigningScheme(_enum(models.SigningScheme, c.signing_scheme)),
        public_key=c.public_key,
        public_key_id=c.public_key_id,
        verification_status=models.VerificationStatus(
            _enum(models.VerificationStatus, c.verification_status)
        ),
        verification_error=c.verification_error,
        filter=c.filter,
    )


def filter_test(r: admin_pb2.TestWebhookFilterResponse) -> models.FilterTestResult:
    return models.FilterTestResult(
        examined=r.examined,
        matched=r.matched,
        matches=tuple(
            models.FilterMatch(m.event_id, m.event_type, timestamp(m, "occurred_at"))
            for m in r.matches
        ),
        errors=r.errors,
        example_matches=r.example_matches if r.HasField("example_matches") else None,
        example_error=r.example_error,
    )


def verify_webhook_endpoint(
    r: admin_pb2.VerifyWebhookEndpointResponse,
) -> models.VerifyWebhookEndpointResult:
    return models.VerifyWebhookEndpointResult(webhook_config(r.config), r.verified, r.error)


def put_webhook_config(r: admin_pb2.PutWebhookConfigResponse) -> models.PutWebhookConfigResult:
    return models.PutWebhookConfigResult(
        config=webhook_config(r.config), secret=r.secret, created=r.created
    )


def _enum(cls: type[models._NamedIntEnum], value: int) -> models._NamedIntEnum:
    try:
        return cls(value)
    except ValueError:  # a value added by a newer server
        return cls(0)


def delivery_log(e: admin_pb2.DeliveryLog) -> models.DeliveryLog:
    return models.DeliveryLog(
        id=e.id,
        event_id=e.event_id,
        event_type=e.event_type,
        config_id=e.config_id,
        delivery_id=e.delivery_id,
        attempt=e.attempt,
        url=e.url,
        request_body=e.request_body,
        response_status_code=e.response_status_code,
        response_body=e.response_body,
        response_body_truncated=e.response_body_truncated,
        error=e.error,
        duration_ms=e.duration_ms,
        outcome=models.DeliveryOutcome(_enum(models.DeliveryOutcome, e.outcome)),
        attempted_at=timestamp(e, "attempted_at"),
        next_attempt_at=timestamp(e, "next_attempt_at"),
        ordering_key=e.ordering_key,
        sequence=e.sequence,
        request_headers=tuple((h.name, h.value) for h in e.request_headers),
        response_headers=tuple((h.name, h.value) for h in e.response_headers),
        response_headers_truncated=e.response_headers_truncated,
        endpoint_deleted=e.endpoint_deleted,
    )


def delivery_log_page(r: admin_pb2.ListDeliveryLogsResponse) -> models.DeliveryLogPage:
    return models.DeliveryLogPage(
        logs=tuple(delivery_log(e) for e in r.logs), next_page_token=r.next_page_token
    )


def delivery(d: admin_pb2.Delivery) -> models.Delivery:
    return models.Delivery(
        id=d.id,
        event_id=d.event_id,
        event_type=d.event_type,
        config_id=d.config_id,
        status=models.DeliveryStatus(_enum(models.DeliveryStatus, d.status)),
        attempts=d.attempts,
        next_attempt_at=timestamp(d, "next_attempt_at"),
        ordering_key=d.ordering_key,
        sequence=d.sequence,
        waiting_for_turn=d.waiting_for_turn,
    )


def event_view(r: admin_pb2.GetEventResponse) -> models.EventView:
    return models.EventView(
        event_id=r.event_id,
        event_type=r.event_type,
        occurred_at=timestamp(r, "occurred_at"),
        created_at=timestamp(r, "created_at"),
        payload=r.payload,
        deliveries=tuple(
            models.EventDelivery(
                delivery=delivery(d.delivery),
                url=d.url,
                endpoint_deleted=d.endpoint_deleted,
                attempts=tuple(delivery_log(a) for a in d.attempts),
            )
            for d in r.deliveries
        ),
    )


def endpoint_stats(r: admin_pb2.GetEndpointStatsResponse) -> models.EndpointStats:
    return models.EndpointStats(
        since=timestamp(r, "since"),
        until=timestamp(r, "until"),
        buckets=tuple(
            models.StatsBucket(timestamp(b, "start"), b.attempts, b.failures) for b in r.buckets
        ),
        attempts=r.attempts,
        failures=r.failures,
        latency_p50_ms=r.latency_p50_ms,
        latency_p90_ms=r.latency_p90_ms,
        latency_p99_ms=r.latency_p99_ms,
    )


def retry_delivery(r: admin_pb2.RetryDeliveryResponse) -> models.RetryDeliveryResult:
    return models.RetryDeliveryResult(delivery=delivery(r.delivery), scheduled=r.scheduled)


def rotate_webhook_secret(
    r: admin_pb2.RotateWebhookSecretResponse,
) -> models.RotateWebhookSecretResult:
    return models.RotateWebhookSecretResult(
        config=webhook_config(r.config),
        secret=r.secret,
        previous_secret_expires_at=timestamp(r, "previous_secret_expires_at"),
    )


def portal_session(r: admin_pb2.CreatePortalSessionResponse) -> models.PortalSession:
    expires_at = timestamp(r, "expires_at")
    assert expires_at is not None  # always set by the server
    return models.PortalSession(
        url=r.url,
        expires_at=expires_at,
        token=r.token,
        session_id=r.session_id,
        organisation_id=r.organisation_id,
        scopes=tuple(r.scopes),
    )


def event_type(t: admin_pb2.EventTypeDefinition) -> models.EventTypeDefinition:
    return models.EventTypeDefinition(
        name=t.name,
        category=t.category,
        description=t.description,
        schema=json_format.MessageToDict(t.schema),
        example=json_format.MessageToDict(t.example),
    )


def publish_result(r: publisher_pb2.PublishEventResponse) -> models.PublishResult:
    return models.PublishResult(event_id=r.event_id, deliveries=r.deliveries, duplicate=r.duplicate)
