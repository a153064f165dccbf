"""The operating RPCs of WebhookAdmin: retry, replay, test event, secret rotation.

A mixin of ``WebhookAdminServicer`` (``api/admin.py``), kept apart so that
the configuration/log servicer stays small. Thin like the rest: the use
cases are ``core/redelivery.py``, ``core/ping.py`` and ``core/rotation.py``;
errors are raised as ``webhooks_service.errors`` and mapped by the auth
interceptor (which also checks the ``webhooks:write`` scope of each).

Retry and replay make deliveries due now; ``notify`` (the in-process
worker's wake-up, as for publishing) is called after they commit, so a
worker in this process attempts them at once. Workers in other processes
are woken by PostgreSQL NOTIFY, or poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC
from typing import Any

import grpc
from google.protobuf import json_format
from sqlalchemy.engine import Engine

from webhooks.v1 import admin_pb2
from webhooks_service.api.auth import require_organisation
from webhooks_service.api.convert import (
    config_to_proto,
    delivery_to_proto,
    log_to_proto,
    replay_outcomes_from_proto,
    timestamp,
)
from webhooks_service.config import Settings
from webhooks_service.core import ping, redelivery, rotation
from webhooks_service.core.server_keys import keyring
from webhooks_service.delivery.attempt import attempt_session

Context = grpc.aio.ServicerContext[Any, Any]


class AdminOperations:
    """RetryDelivery, ReplayDeliveries, SendTestEvent and RotateWebhookSecret."""

    _settings: Settings
    _engine: Engine
    _notify: Callable[[], Any] | None
    keys_changed: Callable[[str], None]  # api/signing.py

    def _wake_worker(self) -> None:
        if self._notify is not None:
            self._notify()

    async def RetryDelivery(
        self, request: admin_pb2.RetryDeliveryRequest, context: Context
    ) -> admin_pb2.RetryDeliveryResponse:
        org = require_organisation()
        result = await asyncio.to_thread(
            redelivery.retry_delivery, self._engine, org, request.delivery_id
        )
        if result.scheduled:
            self._wake_worker()
        return admin_pb2.RetryDeliveryResponse(
            delivery=delivery_to_proto(result.delivery, keyring(self._engine).ids),
            scheduled=result.scheduled,
        )

    async def ReplayDeliveries(
        self, request: admin_pb2.ReplayDeliveriesRequest, context: Context
    ) -> admin_pb2.ReplayDeliveriesResponse:
        org = require_organisation()
        replayed = await asyncio.to_thread(
            redelivery.replay_deliveries,
            self._engine,
            org,
            request.config_id,
            since=request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None,
            until=request.until.ToDatetime(tzinfo=UTC) if request.HasField("until") else None,
            outcomes=replay_outcomes_from_proto(list(request.outcomes)),
            budgets=redelivery.default_budgets(self._settings, self._engine),
        )
        if replayed:
            self._wake_worker()
        return admin_pb2.ReplayDeliveriesResponse(replayed=replayed)

    async def SendTestEvent(
        self, request: admin_pb2.SendTestEventRequest, context: Context
    ) -> admin_pb2.SendTestEventResponse:
        org = require_organisation()
        row = await ping.send_test_event(
            self._engine,
            self._settings,
            org,
            request.config_id,
            attempt_session=lambda: attempt_session(self._settings),
            event_type=request.event_type,
            data=json_format.MessageToDict(request.data) if request.HasField("data") else None,
        )
        return admin_pb2.SendTestEventResponse(log=log_to_proto(row, keyring(self._engine).ids))

    async def RotateWebhookSecret(
        self, request: admin_pb2.RotateWebhookSecretRequest, context: Context
    ) -> admin_pb2.RotateWebhookSecretResponse:
        org = require_organisation()
        result = await asyncio.to_thread(
            rotation.rotate_secret,
            self._engine,
            self._settings,
            org,
            request.config_id,
            secret=request.secret if request.HasField("secret") else None,
        )
        self.keys_changed(org)
        response = admin_pb2.RotateWebhookSecretResponse(
            config=config_to_proto(result.config), secret=result.generated_secret
        )
        if result.previous_secret_expires_at is not None:
            response.previous_secret_expires_at.CopyFrom(
                timestamp(result.previous_secret_expires_at)
            )
        return response
