"""Typed, synchronous clients over the generated stubs.

Why synchronous: the callers we know (internal services publishing events,
admin scripts, tests, notebooks) are mostly synchronous, and a blocking
``grpc`` channel works from any thread without an event loop. An asyncio
variant over ``grpc.aio`` can later mirror this surface method for method;
nothing here would change.

Each client owns one channel (or uses the one you pass, which it then does
not close), sends ``authorization: Bearer <api key>`` on every call, applies
a per-call timeout (constructor default, overridable per method) and turns
``grpc.RpcError`` into the :mod:`webhooks_client._errors` tree. Calls are
not retried automatically: PublishEvent is idempotent only with an explicit
event ``id``, so retrying is the caller's decision.

Results are :mod:`webhooks_client.models` (frozen dataclasses, enums,
``datetime``), converted from the messages in :mod:`webhooks_client._convert`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf import struct_pb2, timestamp_pb2

from webhooks.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    events_pb2,
    publisher_pb2,
    publisher_pb2_grpc,
)
from webhooks_client import _convert, models
from webhooks_client._errors import from_rpc_error

DEFAULT_TIMEOUT = 10.0
TEST_EVENT_TIMEOUT = 25.0  # SendTestEvent waits for one whole delivery attempt

_Resp = TypeVar("_Resp")


def _outcome(value: str | int | None) -> int:
    """``"delivered"`` / ``"OUTCOME_DELIVERED"`` / DeliveryOutcome / number -> number."""
    if value is None or value == "":
        return admin_pb2.OUTCOME_UNSPECIFIED
    if isinstance(value, int):
        return int(value)
    name = value.upper()
    if not name.startswith("OUTCOME_"):
        name = "OUTCOME_" + name
    try:
        return admin_pb2.Outcome.Value(name)
    except ValueError:
        raise ValueError(
            f"unknown outcome {value!r}; use delivered, retry_scheduled, failed, dead or cancelled"
        ) from None


class _Client:
    def __init__(
        self,
        target: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        channel: grpc.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required")
        self._metadata = (("authorization", f"Bearer {api_key}"),)
        self._timeout = timeout
        self._owns_channel = channel is None
        if channel is None:
            if credentials is None:
                channel = grpc.insecure_channel(target, options=list(options))
            else:
                channel = grpc.secure_channel(target, credentials, options=list(options))
        self._channel = channel

    def _call(
        self,
        method: Callable[..., _Resp],
        request: Any,
        timeout: float | None,
        traceparent: str | None = None,
    ) -> _Resp:
        metadata: tuple[tuple[str, str], ...] = self._metadata
        if traceparent:
            metadata = (*metadata, ("traceparent", traceparent))
        try:
            return method(
                request,
                metadata=metadata,
                timeout=self._timeout if timeout is None else timeout,
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    def close(self) -> None:
        """Close the channel (unless it was passed in)."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AdminClient(_Client):
    """WebhookAdmin: configurations and the delivery log of the key's organisation.

    Needs a key with ``webhooks:read`` (lists) / ``webhooks:write`` (put, retry,
    replay, test event, secret rotation).
    """

    def __init__(self, target: str, api_key: str, **kwargs: Any) -> None:
        super().__init__(target, api_key, **kwargs)
        self._stub = admin_pb2_grpc.WebhookAdminStub(self._channel)

    def __enter__(self) -> AdminClient:
        return self

    def list_webhook_configs(
        self, *, page_size: int = 0, timeout: float | None = None
    ) -> list[models.WebhookConfig]:
        """Every configuration of the organisation, oldest first (all pages)."""
        result: list[models.WebhookConfig] = []
        token = ""
        while True:
            request = admin_pb2.ListWebhookConfigsRequest(page_size=page_size, page_token=token)
            page = self._call(self._stub.ListWebhookConfigs, request, timeout)
            result.extend(_convert.webhook_config(c) for c in page.configs)
            token = page.next_page_token
            if not token:
                return result

    def put_webhook_config(
        self,
        *,
        url: str,
        event_types: Sequence[str],
        id: str = "",
        secret: str | None = None,
        enabled: bool | None = None,
        description: str | None = None,
        headers: Mapping[str, str] | None = None,
        clear_headers: bool = False,
        timeout: float | None = None,
    ) -> models.PutWebhookConfigResult:
        """Create (no ``id``) or update a configuration.

        ``secret``, ``enabled`` and ``description`` left as None are absent from
        the request: on create they take their defaults (a generated secret,
        enabled, no description), on update they keep their current values.
        On create without ``secret`` the result's ``secret`` holds the
        generated one, the only time it is shown. ``headers``: custom request
        headers sent on every attempt (on update a non-empty set replaces them
        all, absent or empty keeps them; ``clear_headers`` removes them).
        """
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
        return _convert.put_webhook_config(
            self._call(self._stub.PutWebhookConfig, request, timeout)
        )

    def delete_webhook_config(
        self, config_id: str, *, timeout: float | None = None
    ) -> models.DeleteWebhookConfigResult:
        """Delete a configuration; its pending deliveries are cancelled, its log kept."""
        request = admin_pb2.DeleteWebhookConfigRequest(config_id=config_id)
        response = self._call(self._stub.DeleteWebhookConfig, request, timeout)
        return models.DeleteWebhookConfigResult(response.cancelled_deliveries)

    def list_delivery_logs(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        config_id: str = "",
        event_id: str = "",
        event_type: str = "",
        outcome: str | int | None = None,
        timeout: float | None = None,
    ) -> models.DeliveryLogPage:
        """One page of the delivery log, newest first; pass ``next_page_token`` back
        (with the same filters) for the next one."""
        request = admin_pb2.ListDeliveryLogsRequest(
            page_size=page_size,
            page_token=page_token,
            config_id=config_id,
            event_id=event_id,
            event_type=event_type,
            outcome=_outcome(outcome),  # type: ignore[arg-type]
        )
        return _convert.delivery_log_page(self._call(self._stub.ListDeliveryLogs, request, timeout))

    def iter_delivery_logs(
        self,
        *,
        page_size: int = 0,
        config_id: str = "",
        event_id: str = "",
        event_type: str = "",
        outcome: str | int | None = None,
        timeout: float | None = None,
    ) -> Iterator[models.DeliveryLog]:
        """Every matching log entry, newest first, fetching pages as needed."""
        token = ""
        while True:
            page = self.list_delivery_logs(
                page_size=page_size,
                page_token=token,
                config_id=config_id,
                event_id=event_id,
                event_type=event_type,
                outcome=outcome,
                timeout=timeout,
            )
            yield from page.logs
            token = page.next_page_token
            if not token:
                return

    def retry_delivery(
        self, delivery_id: str, *, timeout: float | None = None
    ) -> models.RetryDeliveryResult:
        """Attempt a delivery (``dlv_…``, a log entry's ``delivery_id``) again now.

        ``scheduled`` is False when it was already due or being attempted.
        """
        request = admin_pb2.RetryDeliveryRequest(delivery_id=delivery_id)
        return _convert.retry_delivery(self._call(self._stub.RetryDelivery, request, timeout))

    def replay_deliveries(
        self,
        config_id: str,
        *,
        since: datetime,
        until: datetime | None = None,
        outcomes: Sequence[str | int] = (),
        timeout: float | None = None,
    ) -> int:
        """Put the config's failed/dead deliveries created in [since, until) back in
        the queue; returns how many. ``outcomes``: "failed" and/or "dead" (default both)."""
        request = admin_pb2.ReplayDeliveriesRequest(
            config_id=config_id,
            since=_timestamp(since),
            outcomes=[_outcome(o) for o in outcomes],  # type: ignore[misc]
        )
        if until is not None:
            request.until.CopyFrom(_timestamp(until))
        return self._call(self._stub.ReplayDeliveries, request, timeout).replayed

    def send_test_event(
        self, config_id: str, *, timeout: float | None = None
    ) -> models.DeliveryLog:
        """Send a ``webhook.ping`` to the config now; returns the logged attempt.

        The call lasts as long as the attempt (up to the service's attempt
        timeout, 15 s by default), so its default deadline is at least
        :data:`TEST_EVENT_TIMEOUT` seconds.
        """
        request = admin_pb2.SendTestEventRequest(config_id=config_id)
        if timeout is None:
            timeout = max(self._timeout, TEST_EVENT_TIMEOUT)
        return _convert.delivery_log(self._call(self._stub.SendTestEvent, request, timeout).log)

    def rotate_webhook_secret(
        self, config_id: str, *, secret: str | None = None, timeout: float | None = None
    ) -> models.RotateWebhookSecretResult:
        """Replace the config's signing secret (generated when ``secret`` is None; then
        the response's ``secret`` holds it, the only time it is shown). The previous
        secret signs too until ``previous_secret_expires_at``."""
        request = admin_pb2.RotateWebhookSecretRequest(config_id=config_id)
        if secret is not None:
            request.secret = secret
        return _convert.rotate_webhook_secret(
            self._call(self._stub.RotateWebhookSecret, request, timeout)
        )

    def list_event_types(
        self, *, category: str = "", timeout: float | None = None
    ) -> list[models.EventTypeDefinition]:
        """The event catalog (or one ``category``): each type's ``name``,
        ``description``, the JSON Schema of its ``data`` and an example (dicts)."""
        request = admin_pb2.ListEventTypesRequest(category=category)
        types = self._call(self._stub.ListEventTypes, request, timeout).event_types
        return [_convert.event_type(t) for t in types]


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    if value.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware (e.g. datetime.now(UTC))")
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def make_publish_request(
    organisation_id: str,
    type: str,
    data: Mapping[str, Any],
    *,
    id: str | None = None,
    timestamp: datetime | None = None,
) -> publisher_pb2.PublishEventRequest:
    """A PublishEventRequest (for :meth:`PublisherClient.publish_events`)."""
    payload = struct_pb2.Struct()
    payload.update(dict(data))
    event = events_pb2.Event(id=id or "", type=type, data=payload)
    if timestamp is not None:
        event.timestamp.CopyFrom(_timestamp(timestamp))
    return publisher_pb2.PublishEventRequest(organisation_id=organisation_id, event=event)


class PublisherClient(_Client):
    """EventPublisher: publish events (key with scope ``events:publish``)."""

    def __init__(self, target: str, api_key: str, **kwargs: Any) -> None:
        super().__init__(target, api_key, **kwargs)
        self._stub = publisher_pb2_grpc.EventPublisherStub(self._channel)

    def __enter__(self) -> PublisherClient:
        return self

    def publish_event(
        self,
        organisation_id: str,
        type: str,
        data: Mapping[str, Any],
        *,
        id: str | None = None,
        timestamp: datetime | None = None,
        timeout: float | None = None,
        traceparent: str | None = None,
    ) -> models.PublishResult:
        """Publish one event. Give ``id`` to make retries safe: the same id twice
        is stored once and answers ``duplicate=True``. ``traceparent`` (W3C) makes
        the service's spans of this event (publish, every attempt) part of your trace."""
        request = make_publish_request(organisation_id, type, data, id=id, timestamp=timestamp)
        return _convert.publish_result(
            self._call(self._stub.PublishEvent, request, timeout, traceparent)
        )

    def publish_events(
        self,
        requests: Sequence[publisher_pb2.PublishEventRequest],
        *,
        timeout: float | None = None,
        traceparent: str | None = None,
    ) -> list[models.PublishResult]:
        """Publish up to 500 events in one transaction; results in request order.
        ``traceparent`` (W3C): the service's spans of these events join your trace."""
        batch = publisher_pb2.PublishEventsRequest(requests=list(requests))
        results = self._call(self._stub.PublishEvents, batch, timeout, traceparent).results
        return [_convert.publish_result(r) for r in results]
