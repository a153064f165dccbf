"""The EventPublisher servicer: protos in, ``core.publishing`` call, protos out.

``notify`` (``webhooks serve`` passes the in-process worker's wake-up,
``LocalWorker.notify``) is called after a publish that created deliveries
for which no worker was found commits; ``lend`` (``LocalWorker.lend``) lets
publish hand new deliveries to that worker already claimed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Any

import grpc
from sqlalchemy.engine import Engine

from webhooks.v1 import publisher_pb2, publisher_pb2_grpc
from webhooks_service.api.auth import current_principal
from webhooks_service.config import Settings
from webhooks_service.core import publishing
from webhooks_service.core.publishing import StoredEvent

Context = grpc.aio.ServicerContext[Any, Any]


def to_input(request: publisher_pb2.PublishEventRequest) -> publishing.EventInput:
    event = request.event
    return publishing.EventInput(
        organisation_id=request.organisation_id,
        event_id=event.id,
        event_type=event.type,
        timestamp=event.timestamp.ToDatetime(tzinfo=UTC) if event.HasField("timestamp") else None,
        # the Struct itself: payloads.resolve checks and renders it in one walk
        data=event.data if event.HasField("data") else None,
        payload=event.payload if event.HasField("payload") else None,
        ordering_key=event.ordering_key,
    )


def to_response(result: StoredEvent) -> publisher_pb2.PublishEventResponse:
    return publisher_pb2.PublishEventResponse(
        event_id=result.event_id, deliveries=result.deliveries, duplicate=result.duplicate
    )


class EventPublisherServicer(publisher_pb2_grpc.EventPublisherServicer):
    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        notify: Callable[[], Any] | None = None,
        lend: publishing.Lend | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.notify = notify
        self.lend = lend

    async def PublishEvent(
        self, request: publisher_pb2.PublishEventRequest, context: Context
    ) -> publisher_pb2.PublishEventResponse:
        results = await publishing.publish_events(
            self.engine,
            self.settings,
            current_principal().organisation_id,
            [to_input(request)],
            notify=self.notify,
            lend=self.lend,
        )
        return to_response(results[0])

    async def PublishEvents(
        self, request: publisher_pb2.PublishEventsRequest, context: Context
    ) -> publisher_pb2.PublishEventsResponse:
        results = await publishing.publish_events(
            self.engine,
            self.settings,
            current_principal().organisation_id,
            [to_input(r) for r in request.requests],
            notify=self.notify,
            lend=self.lend,
            batch=True,
        )
        return publisher_pb2.PublishEventsResponse(results=[to_response(r) for r in results])
