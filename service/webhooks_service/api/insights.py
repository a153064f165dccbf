"""The read-only views of WebhookAdmin for the portal: GetEvent and GetEndpointStats.

A mixin of ``WebhookAdminServicer`` (``api/admin.py``), thin like the rest.
"""

from __future__ import annotations

from typing import Any

import grpc
from sqlalchemy.engine import Engine

from webhooks.v1 import admin_pb2
from webhooks_service.config import Settings

Context = grpc.aio.ServicerContext[Any, Any]


class AdminInsights:
    """GetEvent and GetEndpointStats."""

    _settings: Settings
    _engine: Engine

    async def GetEvent(
        self, request: admin_pb2.GetEventRequest, context: Context
    ) -> admin_pb2.GetEventResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "GetEvent is not implemented yet")
        raise AssertionError("unreachable")

    async def GetEndpointStats(
        self, request: admin_pb2.GetEndpointStatsRequest, context: Context
    ) -> admin_pb2.GetEndpointStatsResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "GetEndpointStats is not implemented yet"
        )
        raise AssertionError("unreachable")
