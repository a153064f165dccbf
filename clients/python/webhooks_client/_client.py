"""Typed, synchronous clients over the generated stubs.

Why synchronous first: the callers we know (internal services publishing
events, admin scripts, tests, notebooks) are mostly synchronous, and a
blocking ``grpc`` channel works from any thread without an event loop. The
asyncio clients (``_aio.py``: ``AsyncAdminClient``, ``AsyncPublisherClient``
over ``grpc.aio``) mirror this surface method for method; both build their
requests and results with the same functions (``_calls.py``).

Each client owns one channel (or uses the one you pass, which it then does
not close), sends ``authorization: Bearer <api key>`` on every call, applies
a per-call timeout (constructor default, overridable per method) and turns
``grpc.RpcError`` into the :mod:`webhooks_client._errors` tree. Calls are
not retried automatically: PublishEvent is idempotent only with an explicit
event ``id``, so retrying is the caller's decision.

Results are :mod:`webhooks_client.models` (frozen dataclasses, enums,
``datetime``), converted from the messages in :mod:`webhooks_client._convert`
(through ``_calls.py``, for both kinds of client).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from webhooks.v1 import admin_pb2_grpc, publisher_pb2, publisher_pb2_grpc
from webhooks_client import _calls as calls
from webhooks_client import models
from webhooks_client._calls import DEFAULT_TIMEOUT, TEST_EVENT_TIMEOUT, make_publish_request
from webhooks_client._errors import from_rpc_error

__all__ = [
    "DEFAULT_TIMEOUT",
    "TEST_EVENT_TIMEOUT",
    "AdminClient",
    "PublisherClient",
    "make_publish_request",
]

_Resp = TypeVar("_Resp")


def auth_metadata(api_key: str) -> tuple[tuple[str, str], ...]:
    if not api_key:
        raise ValueError("api_key is required")
    return (("authorization", f"Bearer {api_key}"),)


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
        self._metadata = auth_metadata(api_key)
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
            request = calls.list_configs_request(page_size, token)
            items, token = calls.configs_page(
                self._call(self._stub.ListWebhookConfigs, request, timeout)
            )
            result.extend(items)
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
        signing_scheme: models.SigningScheme | None = None,
        filter: str | None = None,
        timeout: float | None = None,
        ordered: bool | None = None,
    ) -> models.PutWebhookConfigResult:
        """Create (no ``id``) or update a configuration.

        ``secret``, ``enabled`` and ``description`` left as None are absent from
        the request: on create they take their defaults (a generated secret,
        enabled, no description), on update they keep their current values.
        On create without ``secret`` the result's ``secret`` holds the
        generated one, the only time it is shown. ``headers``: custom request
        headers sent on every attempt (on update a non-empty set replaces them
        all, absent or empty keeps them; ``clear_headers`` removes them).
        ``filter``: a CEL payload filter (``event.data.points > 100``); None
        keeps the current one on update, "" removes it.
        """
        request = calls.put_config_request(
            url=url,
            event_types=event_types,
            id=id,
            secret=secret,
            enabled=enabled,
            description=description,
            headers=headers,
            clear_headers=clear_headers,
            ordered=ordered,
            signing_scheme=signing_scheme,
            filter=filter,
        )
        return calls.put_config_result(self._call(self._stub.PutWebhookConfig, request, timeout))

    def test_webhook_filter(
        self,
        filter: str,
        event_types: Sequence[str],
        *,
        limit: int = 0,
        example_data: Mapping[str, Any] | None = None,
        example_type: str = "",
        timeout: float | None = None,
    ) -> models.FilterTestResult:
        """Try a payload filter on the organisation's recent events (and an example)."""
        request = calls.filter_test_request(
            filter=filter,
            event_types=event_types,
            limit=limit,
            example_data=example_data,
            example_type=example_type,
        )
        return calls.filter_test_result(self._call(self._stub.TestWebhookFilter, request, timeout))

    def delete_webhook_config(
        self, config_id: str, *, timeout: float | None = None
    ) -> models.DeleteWebhookConfigResult:
        """Delete a configuration; its pending deliveries are cancelled, its log kept."""
        request = calls.delete_request(config_id)
        return calls.delete_result(self._call(self._stub.DeleteWebhookConfig, request, timeout))

    def list_delivery_logs(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        config_id: str = "",
        event_id: str = "",
        event_type: str = "",
        outcome: str | int | None = None,
        bodies: bool = True,
        since: datetime | None = None,
        until: datetime | None = None,
        status_class: str | int | None = None,
        timeout: float | None = None,
    ) -> models.DeliveryLogPage:
        """One page of the delivery log, newest first; pass ``next_page_token`` back
        (with the same filters) for the next one. ``bodies=False`` asks for the
        BASIC view (no request/response bodies: small pages, many entries). A
        page may hold fewer than ``page_size`` entries (the server's page byte
        budget) and still have a next page."""
        request = calls.list_logs_request(
            page_size=page_size,
            page_token=page_token,
            config_id=config_id,
            event_id=event_id,
            event_type=event_type,
            outcome_filter=outcome,
            bodies=bodies,
            since=since,
            until=until,
            status_class=status_class,
        )
        return calls.logs_page_result(self._call(self._stub.ListDeliveryLogs, request, timeout))

    def iter_delivery_logs(
        self,
        *,
        page_size: int = 0,
        config_id: str = "",
        event_id: str = "",
        event_type: str = "",
        outcome: str | int | None = None,
        bodies: bool = True,
        since: datetime | None = None,
        until: datetime | None = None,
        status_class: str | int | None = None,
        timeout: float | None = None,
    ) -> Iterator[models.DeliveryLog]:
        """Every matching log entry, newest first, fetching pages as needed."""
        token = ""
        while True:
            request = calls.list_logs_request(
                page_size=page_size,
                page_token=token,
                config_id=config_id,
                event_id=event_id,
                event_type=event_type,
                outcome_filter=outcome,
                bodies=bodies,
                since=since,
                until=until,
                status_class=status_class,
            )
            items, token = calls.logs_page(
                self._call(self._stub.ListDeliveryLogs, request, timeout)
            )
            yield from items
            if not token:
                return

    def get_event(self, event_id: str, *, timeout: float | None = None) -> models.EventView:
        """One event (``evt_…``, as published) and every endpoint's delivery of it: the
        exact payload sent, each delivery's state and latest attempts (bodies: use
        ``list_delivery_logs(event_id=…)``). Another organisation's event is
        :class:`NotFoundError`, as is an unknown one."""
        request = calls.get_event_request(event_id)
        return calls.get_event_result(self._call(self._stub.GetEvent, request, timeout))

    def get_endpoint_stats(
        self, config_id: str, *, timeout: float | None = None
    ) -> models.EndpointStats:
        """An endpoint's last 24 hours in hourly buckets (attempts, failures) and latency
        percentiles, from aggregates the service keeps (cheap at any volume); also for
        a deleted endpoint while its log is kept."""
        request = calls.endpoint_stats_request(config_id)
        return calls.endpoint_stats_result(
            self._call(self._stub.GetEndpointStats, request, timeout)
        )

    def retry_delivery(
        self, delivery_id: str, *, timeout: float | None = None
    ) -> models.RetryDeliveryResult:
        """Attempt a delivery (``dlv_…``, a log entry's ``delivery_id``) again now.

        ``scheduled`` is False when it was already due or being attempted.
        """
        request = calls.retry_request(delivery_id)
        return calls.retry_result(self._call(self._stub.RetryDelivery, request, timeout))

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
        request = calls.replay_request(config_id, since=since, until=until, outcomes=outcomes)
        return calls.replay_result(self._call(self._stub.ReplayDeliveries, request, timeout))

    def send_test_event(
        self,
        config_id: str,
        *,
        event_type: str = "",
        data: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> models.DeliveryLog:
        """Send a ``webhook.ping`` to the config now; returns the logged attempt.

        The call lasts as long as the attempt (up to the service's attempt
        timeout, 15 s by default), so its default deadline is at least
        :data:`TEST_EVENT_TIMEOUT` seconds.
        """
        request = calls.test_event_request(config_id, event_type, data)
        deadline = calls.test_event_timeout(self._timeout, timeout)
        return calls.test_event_result(self._call(self._stub.SendTestEvent, request, deadline))

    def verify_webhook_endpoint(
        self, config_id: str, *, timeout: float | None = None
    ) -> models.VerifyWebhookEndpointResult:
        """Send the ownership challenge now (``webhook.verification``); the config after
        it and whether the endpoint echoed it. Lasts up to the attempt timeout."""
        request = calls.verify_request(config_id)
        deadline = calls.test_event_timeout(self._timeout, timeout)
        return calls.verify_result(self._call(self._stub.VerifyWebhookEndpoint, request, deadline))

    def rotate_webhook_secret(
        self, config_id: str, *, secret: str | None = None, timeout: float | None = None
    ) -> models.RotateWebhookSecretResult:
        """Replace the config's signing secret (generated when ``secret`` is None; then
        the response's ``secret`` holds it, the only time it is shown). The previous
        secret signs too until ``previous_secret_expires_at``."""
        request = calls.rotate_request(config_id, secret)
        return calls.rotate_result(self._call(self._stub.RotateWebhookSecret, request, timeout))

    def list_event_types(
        self, *, category: str = "", timeout: float | None = None
    ) -> list[models.EventTypeDefinition]:
        """The event catalog (or one ``category``): each type's ``name``,
        ``description``, the JSON Schema of its ``data`` and an example (dicts)."""
        request = calls.event_types_request(category)
        return calls.event_types_result(self._call(self._stub.ListEventTypes, request, timeout))

    def create_portal_session(
        self,
        *,
        organisation_id: str = "",
        scopes: Sequence[str] = (),
        ttl_seconds: int = 0,
        timeout: float | None = None,
    ) -> models.PortalSession:
        """A short-lived dashboard session: ``url`` opens the dashboard signed in
        (hand it to the admin's browser), ``expires_at`` ends it, ``session_id``
        revokes it. ``organisation_id`` only with a platform key; ``scopes`` at
        most this key's (default: its webhooks scopes)."""
        request = calls.portal_session_request(organisation_id, scopes, ttl_seconds)
        return calls.portal_session_result(
            self._call(self._stub.CreatePortalSession, request, timeout)
        )

    def revoke_portal_session(self, session_id: str, *, timeout: float | None = None) -> bool:
        """End a portal session now; False if it had already ended."""
        request = calls.revoke_portal_session_request(session_id)
        return self._call(self._stub.RevokePortalSession, request, timeout).revoked


class PublisherClient(_Client):
    """EventPublisher: publish events (key with scope ``events:publish``)."""

    def __init__(self, target: str, api_key: str, **kwargs: Any) -> None:
        super().__init__(target, api_key, **kwargs)
        self._stub = publisher_pb2_grpc.EventPublisherStub(self._channel)

    def __enter__(self) -> PublisherClient:
        return self

    def publish(
        self,
        organisation_id: str,
        payload: Message,
        *,
        id: str | None = None,
        timestamp: datetime | None = None,
        timeout: float | None = None,
        traceparent: str | None = None,
        ordering_key: str | None = None,
    ) -> models.PublishResult:
        """Publish one typed event: ``publish(org, RewardClaimed(user_id=…, …))``.

        The type is the payload message's (``reward.claimed``). Give ``id`` to
        make retries safe: the same id twice is stored once (``duplicate=True``).
        ``traceparent`` as for :meth:`publish_event`.
        """
        request = make_publish_request(organisation_id, payload, id=id, timestamp=timestamp)
        return calls.publish_result(
            self._call(self._stub.PublishEvent, request, timeout, traceparent)
        )

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
        ordering_key: str | None = None,
    ) -> models.PublishResult:
        """Publish one event given as a type and its JSON ``data`` (checked by the
        service against the type's payload). Give ``id`` to make retries safe: the
        same id twice is stored once and answers ``duplicate=True``. ``traceparent``
        (W3C) makes the service's spans of this event (publish, every attempt) part
        of your trace."""
        request = make_publish_request(
            organisation_id, type, data, id=id, timestamp=timestamp, ordering_key=ordering_key
        )
        return calls.publish_result(
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
        batch = calls.publish_batch_request(requests)
        return calls.publish_batch_result(
            self._call(self._stub.PublishEvents, batch, timeout, traceparent)
        )
