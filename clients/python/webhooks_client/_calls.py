"""What each client method sends and what it returns: one place for both clients.

``AdminClient`` / ``PublisherClient`` (blocking, ``_client.py``) and
``AsyncAdminClient`` / ``AsyncPublisherClient`` (``grpc.aio``, ``_aio.py``)
differ only in how they wait. Every method builds its request with a
``*_request`` function here and turns the answer into its result with the
matching ``*_result`` function (through :mod:`webhooks_client._convert` to
:mod:`webhooks_client.models`), so a change of either applies to both
clients at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import any_pb2, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from webhooks.v1 import admin_pb2, events_pb2, publisher_pb2
from webhooks_client import _convert, models
from webhooks_client.events import event_type_of

DEFAULT_TIMEOUT = 10.0
TEST_EVENT_TIMEOUT = 25.0  # SendTestEvent waits for one whole delivery attempt


def outcome(value: str | int | None) -> int:
    """``"delivered"`` / ``"OUTCOME_DELIVERED"`` / DeliveryOutcome / number -> number."""
    if value is None or value == "":
        return admin_pb2.OUTCOME_UNSPECIFIED
    if isinstance(value, int):
        return int(value)  # a number or a DeliveryOutcome
    name = value.upper()
    if not name.startswith("OUTCOME_"):
        name = "OUTCOME_" + name
    try:
        return admin_pb2.Outcome.Value(name)
    except ValueError:
        raise ValueError(
            f"unknown outcome {value!r}; use delivered, retry_scheduled, failed, dead or cancelled"
        ) from None


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    if value.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware (e.g. datetime.now(UTC))")
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


# -- WebhookAdmin ------------------------------------------------------------------


def list_configs_request(page_size: int, page_token: str) -> admin_pb2.ListWebhookConfigsRequest:
    return admin_pb2.ListWebhookConfigsRequest(page_size=page_size, page_token=page_token)


def configs_page(
    response: admin_pb2.ListWebhookConfigsResponse,
) -> tuple[list[models.WebhookConfig], str]:
    """(configurations, next page token) of one page."""
    return [_convert.webhook_config(c) for c in response.configs], response.next_page_token


def put_config_request(
    *,
    url: str,
    event_types: Sequence[str],
    id: str,
    secret: str | None,
    enabled: bool | None,
    description: str | None,
    headers: Mapping[str, str] | None = None,
    clear_headers: bool = False,
    ordered: bool | None = None,
    signing_scheme: models.SigningScheme | None = None,
    filter: str | None = None,
) -> admin_pb2.PutWebhookConfigRequest:
    request = admin_pb2.PutWebhookConfigRequest(
        id=id,
        url=url,
        event_types=list(event_types),
        headers=dict(headers or {}),
        clear_headers=clear_headers,
    )
    if secret is not None:
        request.secret = secret
    if enabled is not None:
        request.enabled = enabled
    if description is not None:
        request.description = description
    if ordered is not None:
        request.ordered = ordered
    if signing_scheme is not None:
        request.signing_scheme = int(signing_scheme)  # type: ignore[assignment]
    if filter is not None:
        request.filter = filter
    return request


def filter_test_request(
    *,
    filter: str,
    event_types: Sequence[str],
    limit: int = 0,
    example_data: Mapping[str, Any] | None = None,
    example_type: str = "",
) -> admin_pb2.TestWebhookFilterRequest:
    request = admin_pb2.TestWebhookFilterRequest(
        filter=filter, event_types=list(event_types), limit=limit, example_type=example_type
    )
    if example_data is not None:
        request.example_data.SetInParent()  # an empty example is still an example
        request.example_data.update(dict(example_data))
    return request


def filter_test_result(response: admin_pb2.TestWebhookFilterResponse) -> models.FilterTestResult:
    return _convert.filter_test(response)


def put_config_result(
    response: admin_pb2.PutWebhookConfigResponse,
) -> models.PutWebhookConfigResult:
    return _convert.put_webhook_config(response)


def delete_request(config_id: str) -> admin_pb2.DeleteWebhookConfigRequest:
    return admin_pb2.DeleteWebhookConfigRequest(config_id=config_id)


def delete_result(
    response: admin_pb2.DeleteWebhookConfigResponse,
) -> models.DeleteWebhookConfigResult:
    return models.DeleteWebhookConfigResult(response.cancelled_deliveries)


def list_logs_request(
    *,
    page_size: int,
    page_token: str,
    config_id: str,
    event_id: str,
    event_type: str,
    outcome_filter: str | int | None,
    bodies: bool = True,
    since: datetime | None = None,
    until: datetime | None = None,
    status_class: str | int | None = None,
) -> admin_pb2.ListDeliveryLogsRequest:
    """``bodies=False``: the BASIC view (no request/response bodies or headers);
    ``status_class``: "2xx" … "5xx", "no_response" or the enum value."""
    request = admin_pb2.ListDeliveryLogsRequest(
        page_size=page_size,
        page_token=page_token,
        config_id=config_id,
        event_id=event_id,
        event_type=event_type,
        outcome=outcome(outcome_filter),  # type: ignore[arg-type]
        view=admin_pb2.DELIVERY_LOG_VIEW_FULL if bodies else admin_pb2.DELIVERY_LOG_VIEW_BASIC,
        status_class=status_class_value(status_class),  # type: ignore[arg-type]
    )
    if since is not None:
        request.since.CopyFrom(timestamp(since))
    if until is not None:
        request.until.CopyFrom(timestamp(until))
    return request


def status_class_value(value: str | int | None) -> int:
    """A status class filter as the enum value: "5xx", "STATUS_CLASS_5XX", an int."""
    if value is None or value == "":
        return admin_pb2.STATUS_CLASS_UNSPECIFIED
    if isinstance(value, int):
        return value
    name = value.upper()
    return admin_pb2.StatusClass.Value(
        name if name.startswith("STATUS_CLASS_") else f"STATUS_CLASS_{name}"
    )


def logs_page_result(response: admin_pb2.ListDeliveryLogsResponse) -> models.DeliveryLogPage:
    return _convert.delivery_log_page(response)


def logs_page(
    response: admin_pb2.ListDeliveryLogsResponse,
) -> tuple[tuple[models.DeliveryLog, ...], str]:
    """(log entries, next page token) of one page, for the iterators."""
    page = logs_page_result(response)
    return page.logs, page.next_page_token


def retry_request(delivery_id: str) -> admin_pb2.RetryDeliveryRequest:
    return admin_pb2.RetryDeliveryRequest(delivery_id=delivery_id)


def retry_result(response: admin_pb2.RetryDeliveryResponse) -> models.RetryDeliveryResult:
    return _convert.retry_delivery(response)


def replay_request(
    config_id: str, *, since: datetime, until: datetime | None, outcomes: Sequence[str | int]
) -> admin_pb2.ReplayDeliveriesRequest:
    request = admin_pb2.ReplayDeliveriesRequest(
        config_id=config_id,
        since=timestamp(since),
        outcomes=[outcome(o) for o in outcomes],  # type: ignore[misc]
    )
    if until is not None:
        request.until.CopyFrom(timestamp(until))
    return request


def replay_result(response: admin_pb2.ReplayDeliveriesResponse) -> int:
    return response.replayed


def test_event_request(
    config_id: str, event_type: str = "", data: Mapping[str, Any] | None = None
) -> admin_pb2.SendTestEventRequest:
    request = admin_pb2.SendTestEventRequest(config_id=config_id, event_type=event_type)
    if data is not None:
        request.data.update(dict(data))
    return request


def test_event_timeout(default: float, timeout: float | None) -> float:
    return max(default, TEST_EVENT_TIMEOUT) if timeout is None else timeout


def test_event_result(response: admin_pb2.SendTestEventResponse) -> models.DeliveryLog:
    return _convert.delivery_log(response.log)


def get_event_request(event_id: str) -> admin_pb2.GetEventRequest:
    return admin_pb2.GetEventRequest(event_id=event_id)


def get_event_result(response: admin_pb2.GetEventResponse) -> models.EventView:
    return _convert.event_view(response)


def endpoint_stats_request(config_id: str) -> admin_pb2.GetEndpointStatsRequest:
    return admin_pb2.GetEndpointStatsRequest(config_id=config_id)


def endpoint_stats_result(response: admin_pb2.GetEndpointStatsResponse) -> models.EndpointStats:
    return _convert.endpoint_stats(response)


def verify_request(config_id: str) -> admin_pb2.VerifyWebhookEndpointRequest:
    return admin_pb2.VerifyWebhookEndpointRequest(config_id=config_id)


def verify_result(
    response: admin_pb2.VerifyWebhookEndpointResponse,
) -> models.VerifyWebhookEndpointResult:
    return _convert.verify_webhook_endpoint(response)


def rotate_request(config_id: str, secret: str | None) -> admin_pb2.RotateWebhookSecretRequest:
    request = admin_pb2.RotateWebhookSecretRequest(config_id=config_id)
    if secret is not None:
        request.secret = secret
    return request


def rotate_result(
    response: admin_pb2.RotateWebhookSecretResponse,
) -> models.RotateWebhookSecretResult:
    return _convert.rotate_webhook_secret(response)


def event_types_request(category: str) -> admin_pb2.ListEventTypesRequest:
    return admin_pb2.ListEventTypesRequest(category=category)


def event_types_result(
    response: admin_pb2.ListEventTypesResponse,
) -> list[models.EventTypeDefinition]:
    return [_convert.event_type(t) for t in response.event_types]


def portal_session_request(
    organisation_id: str, scopes: Sequence[str], ttl_seconds: int
) -> admin_pb2.CreatePortalSessionRequest:
    return admin_pb2.CreatePortalSessionRequest(
        organisation_id=organisation_id, scopes=list(scopes), ttl_seconds=ttl_seconds
    )


def portal_session_result(response: admin_pb2.CreatePortalSessionResponse) -> models.PortalSession:
    return _convert.portal_session(response)


def revoke_portal_session_request(session_id: str) -> admin_pb2.RevokePortalSessionRequest:
    return admin_pb2.RevokePortalSessionRequest(session_id=session_id)


# -- EventPublisher ----------------------------------------------------------------


def make_publish_request(
    organisation_id: str,
    type: str | Message,
    data: Mapping[str, Any] | None = None,
    *,
    id: str | None = None,
    timestamp: datetime | None = None,
    ordering_key: str | None = None,
) -> publisher_pb2.PublishEventRequest:
    """A PublishEventRequest (for ``publish_events``).

    ``type`` is the dotted type with ``data`` a dict (JSON, checked by the
    service), or a payload message (``RewardClaimed(...)``; the type is
    inferred and ``data`` must be None). ``ordering_key`` (e.g. the user id):
    ordered endpoints get the events of one key one at a time, in order.
    """
    event = events_pb2.Event(id=id or "", ordering_key=ordering_key or "")
    if isinstance(type, Message):
        if data is not None:
            raise ValueError("give a payload message or a type and data, not both")
        packed = any_pb2.Any()
        packed.Pack(type)
        event.type = event_type_of(type)
        event.payload.CopyFrom(packed)
    else:
        if isinstance(data, Message):
            raise ValueError("pass the payload message alone: make_publish_request(org, message)")
        payload = struct_pb2.Struct()
        payload.update(_exact_ints(dict(data or {})))
        event.type = type
        event.data.CopyFrom(payload)
    if timestamp is not None:
        event.timestamp.CopyFrom(_timestamp(timestamp))
    return publisher_pb2.PublishEventRequest(organisation_id=organisation_id, event=event)


_timestamp = timestamp
_SAFE_INT = 2**53 - 1  # a Struct number is a double: beyond this an int would be rounded


def _exact_ints(value: Any) -> Any:
    """``value`` with every int beyond ±(2^53 - 1) as its decimal string, as
    proto JSON writes an int64: a Struct would round it (2^53 + 1 -> 2^53)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value) if abs(value) > _SAFE_INT else value
    if isinstance(value, Mapping):
        return {k: _exact_ints(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_exact_ints(v) for v in value]
    return value


def publish_result(response: publisher_pb2.PublishEventResponse) -> models.PublishResult:
    return _convert.publish_result(response)


def publish_batch_request(
    requests: Sequence[publisher_pb2.PublishEventRequest],
) -> publisher_pb2.PublishEventsRequest:
    return publisher_pb2.PublishEventsRequest(requests=list(requests))


def publish_batch_result(
    response: publisher_pb2.PublishEventsResponse,
) -> list[models.PublishResult]:
    return [_convert.publish_result(r) for r in response.results]
