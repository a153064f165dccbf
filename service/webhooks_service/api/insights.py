"""The read-only views of WebhookAdmin for the portal: GetEvent and GetEndpointStats.

A mixin of ``WebhookAdminServicer`` (``api/admin.py``), thin like the rest:
the use cases are ``core/event_view.py`` and ``core/endpoint_stats.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from sqlalchemy.engine import Engine

from webhooks.v1 import admin_pb2
from webhooks_service.api.auth import require_organisation
from webhooks_service.api.convert import delivery_to_proto, log_to_proto, timestamp
from webhooks_service.config import Settings
from webhooks_service.core import endpoint_stats, event_view
from webhooks_service.core.server_keys import keyring

Context = grpc.aio.ServicerContext[Any, Any]


class AdminInsights:
    """GetEvent and GetEndpointStats."""

    _settings: Settings
    _engine: Engine

    async def GetEvent(
        self, request: admin_pb2.GetEventRequest, context: Context
    ) -> admin_pb2.GetEventResponse:
        org = require_organisation()
        view = await asyncio.to_thread(event_view.get_event, self._engine, org, request.event_id)
        ids = keyring(self._engine).ids
        return admin_pb2.GetEventResponse(
            event_id=view.event_id,
            event_type=view.event_type,
            occurred_at=timestamp(view.occurred_at),
            created_at=timestamp(view.created_at),
            payload=view.payload,
            deliveries=[
                admin_pb2.EventDelivery(
                    delivery=delivery_to_proto(d.state, ids),
                    url=d.url,
                    endpoint_deleted=d.endpoint_deleted,
                    attempts=[log_to_proto(a, ids) for a in d.attempts],
                )
                for d in view.deliveries
            ],
        )

    async def GetEndpointStats(
        self, request: admin_pb2.GetEndpointStatsRequest, context: Context
    ) -> admin_pb2.GetEndpointStatsResponse:
        org = require_organisation()
        stats = await asyncio.to_thread(
            endpoint_stats.endpoint_stats, self._engine, org, request.config_id
        )
        return admin_pb2.GetEndpointStatsResponse(
            since=timestamp(stats.since),
            until=timestamp(stats.until),
            buckets=[
                admin_pb2.StatsBucket(
                    start=timestamp(h.start), attempts=h.attempts, failures=h.failures
                )
                for h in stats.hours
            ],
            attempts=stats.attempts,
            failures=stats.failures,
            latency_p50_ms=stats.p50_ms,
            latency_p90_ms=stats.p90_ms,
            latency_p99_ms=stats.p99_ms,
        )
