"""asyncio clients over ``grpc.aio``: the same methods as ``_client.py``, awaited.

    async with AsyncPublisherClient("127.0.0.1:50051", key) as publisher:
        await publisher.publish(org, RewardClaimed(user_id="usr_1", reward_id="rwd_1", ...))

    async with AsyncAdminClient("127.0.0.1:50051", key) as admin:
        async for log in admin.iter_delivery_logs(outcome="failed"):
            ...

A thin layer: each method builds its request and converts its answer with
the functions of ``_calls.py`` that the blocking clients use, so both always
agree. The channel is a ``grpc.aio`` channel (create the client inside the
event loop that uses it); errors are the same :mod:`webhooks_client._errors`
tree.
"""

# ``timeout`` is the per-call gRPC deadline, as in the blocking clients (sent to
# the server, which stops work when it passes), not an asyncio timeout.
# ruff: noqa: ASYNC109

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from webhooks.v1 import admin_pb2_grpc, publisher_pb2, publisher_pb2_grpc
from webhooks_client import _calls as calls
from webhooks_client import models
from webhooks_client._calls import DEFAULT_TIMEOUT, make_publish_request
from webhooks_client._client import auth_metadata
from webhooks_client._errors import from_rpc_error

__all__ = ["AsyncAdminClient", "AsyncPublisherClient"]

_Resp = TypeVar("_Resp")


class _AsyncClient:
    def __init__(
        self,
        target: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        channel: grpc.aio.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._metadata = auth_metadata(api_key)
        self._timeout = timeout
        self._owns_channel = channel is None
        if channel is None:
            if credentials is None:
                channel = grpc.aio.insecure_channel(target, options=list(options))
            else:
                channel = grpc.aio.secure_channel(target, credentials, options=list(options))
        self._channel = channel

    async def _call(
        self,
        method: Callable[..., Awaitable[_Resp]],
        request: Any,
        timeout: float | None,
        traceparent: str | None = None,
    ) -> _Resp:
        metadata: tuple[tuple[str, str], ...] = self._metadata
        if traceparent:
            metadata = (*metadata, ("traceparent", traceparent))
        try:
            return await method(
                request,
                metadata=metadata,
                timeout=self._timeout if timeout is None else timeout,
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    async def close(self) -> None:
        """Close the channel (unless it was passed in)."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncAdminClient(_AsyncClient):
    """WebhookAdmin over grpc.aio; see :class:`webhooks_client.AdminClient`."""

    def __init__(self, target: str, api_key: str, **kwargs: Any) -> None:
        super().__init__(target, api_key, **kwargs)
        self._stub: Any = admin_pb2_grpc.WebhookAdminStub(self._channel)

    async def __aenter__(self) -> AsyncAdminClient:
        return self

    async def list_webhook_configs(
        self, *, page_size: int = 0, timeout: float | None = None
    ) -> list[models.WebhookConfig]:
        """Every configuration of the organisation, oldest first (all pages)."""
        result: list[models.WebhookConfig] = []
        token = ""
        while True:
            request = calls.list_configs_request(page_size, token)
            items, token = calls.configs_page(
                await self._call(self._stub.ListWebhookConfigs, request, timeout)
            )
            result.extend(items)
            if not token:
                return result

    async def put_webhook_config(
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
        """Create (no ``id``) or update a configuration (see AdminClient)."""
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
        return calls.put_config_result(
            await self._call(self._stub.PutWebhookConfig, request, timeout)
        )

    async def test_webhook_filter(
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
        return calls.filter_test_result(
            await self._call(self._stub.TestWebhookFilter, request, timeout)
        )

    async def delete_webhook_config(
        self, config_id: str, *, timeout: float | None = None
    ) -> models.DeleteWebhookConfigResult:
        """Delete a configuration; its pending deliveries are cancelled, its log kept."""
        request = calls.delete_request(config_id)
        return calls.delete_result(
            await self._call(self._stub.DeleteWebhookConfig, request, timeout)
        )

    async def list_delivery_logs(
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
        """One page of the delivery log, newest first (``bodies=False``: the BASIC view)."""
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
        return calls.logs_page_result(
            await self._call(self._stub.ListDeliveryLogs, request, timeout)
        )

    async def iter_delivery_logs(
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
    ) -> AsyncIterator[models.DeliveryLog]:
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
                await self._call(self._stub.ListDeliveryLogs, request, timeout)
            )
            for item in items:
                yield item
            if not token:
                return

    async def get_event(self, event_id: str, *, timeout: float | None = None) -> models.EventView:
        """One event and every endpoint's delivery of it (see ``AdminClient.get_event``)."""
        request = calls.get_event_request(event_id)
        return calls.get_event_result(await self._call(self._stub.GetEvent, request, timeout))

    async def get_endpoint_stats(
        self, config_id: str, *, timeout: float | None = None
    ) -> models.EndpointStats:
        """An endpoint's last 24 hours (see ``AdminClient.get_endpoint_stats``)."""
        request = calls.endpoint_stats_request(config_id)
        return calls.endpoint_stats_result(
            await self._call(self._stub.GetEndpointStats, request, timeout)
        )

    async def retry_delivery(
        self, delivery_id: str, *, timeout: float | None = None
    ) -> models.RetryDeliveryResult:
        """Attempt a delivery (``dlv_…``) again now."""
        request = calls.retry_request(delivery_id)
        return calls.retry_result(await self._call(self._stub.RetryDelivery, request, timeout))

    async def replay_deliveries(
        self,
        config_id: str,
        *,
        since: datetime,
        until: datetime | None = None,
        outcomes: Sequence[str | int] = (),
        timeout: float | None = None,
    ) -> int:
        """Put the config's failed/dead deliveries created in [since, until) back in
        the queue; returns how many."""
        request = calls.replay_request(config_id, since=since, until=until, outcomes=outcomes)
        return calls.replay_result(await self._call(self._stub.ReplayDeliveries, request, timeout))

    async def send_test_event(
        self,
        config_id: str,
        *,
        event_type: str = "",
        data: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> models.DeliveryLog:
        """Send a ``webhook.ping`` to the config now; returns the logged attempt."""
        request = calls.test_event_request(config_id, event_type, data)
        deadline = calls.test_event_timeout(self._timeout, timeout)
        return calls.test_event_result(
            await self._call(self._stub.SendTestEvent, request, deadline)
        )

    async def verify_webhook_endpoint(
        self, config_id: str, *, timeout: float | None = None
    ) -> models.VerifyWebhookEndpointResult:
        """Send the ownership challenge now (``webhook.verification``); the config after
        it and whether the endpoint echoed it. Lasts up to the attempt timeout."""
        request = calls.verify_request(config_id)
        deadline = calls.test_event_timeout(self._timeout, timeout)
        return calls.verify_result(
            await self._call(self._stub.VerifyWebhookEndpoint, request, deadline)
        )

    async def rotate_webhook_secret(
        self, config_id: str, *, secret: str | None = None, timeout: float | None = None
    ) -> models.RotateWebhookSecretResult:
        """Replace the config's signing secret (see AdminClient.rotate_webhook_secret)."""
        request = calls.rotate_request(config_id, secret)
        return calls.rotate_result(
            await self._call(self._stub.RotateWebhookSecret, request, timeout)
        )

    async def list_event_types(
        self, *, category: str = "", timeout: float | None = None
    ) -> list[models.EventTypeDefinition]:
        """The event catalog (or one ``category``) with schemas and examples."""
        request = calls.event_types_request(category)
        return calls.event_types_result(
            await self._call(self._stub.ListEventTypes, request, timeout)
        )

    async def create_portal_session(
        self,
        *,
        organisation_id: str = "",
        scopes: Sequence[str] = (),
        ttl_seconds: int = 0,
        timeout: float | None = None,
    ) -> models.PortalSession:
        """A short-lived dashboard session (see AdminClient.create_portal_session)."""
        request = calls.portal_session_request(organisation_id, scopes, ttl_seconds)
        return calls.portal_session_result(
            await self._call(self._stub.CreatePortalSession, request, timeout)
        )

    async def revoke_portal_session(self, session_id: str, *, timeout: float | None = None) -> bool:
        """End a portal session now; False if it had already ended."""
        request = calls.revoke_portal_session_request(session_id)
        response = await self._call(self._stub.RevokePortalSession, request, timeout)
        return bool(response.revoked)


class AsyncPublisherClient(_AsyncClient):
    """EventPublisher over grpc.aio; see :class:`webhooks_client.PublisherClient`."""

    def __init__(self, target: str, api_key: str, **kwargs: Any) -> None:
        super().__init__(target, api_key, **kwargs)
        self._stub: Any = publisher_pb2_grpc.EventPublisherStub(self._channel)

    async def __aenter__(self) -> AsyncPublisherClient:
        return self

    async def publish(
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
        """Publish one typed event; the type is the payload message's."""
        request = make_publish_request(organisation_id, payload, id=id, timestamp=timestamp)
        return calls.publish_result(
            await self._call(self._stub.PublishEvent, request, timeout, traceparent)
        )

    async def publish_event(
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
        """Publish one event given as a type and its JSON ``data``."""
        request = make_publish_request(
            organisation_id, type, data, id=id, timestamp=timestamp, ordering_key=ordering_key
        )
        return calls.publish_result(
            await self._call(self._stub.PublishEvent, request, timeout, traceparent)
        )

    async def publish_events(
        self,
        requests: Sequence[publisher_pb2.PublishEventRequest],
        *,
        timeout: float | None = None,
        traceparent: str | None = None,
    ) -> list[models.PublishResult]:
        """Publish up to 500 events in one transaction; results in request order."""
        batch = calls.publish_batch_request(requests)
        return calls.publish_batch_result(
            await self._call(self._stub.PublishEvents, batch, timeout, traceparent)
        )
