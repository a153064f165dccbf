"""The WebhookAdmin servicer: translate protos to use-case calls and back.

Thin on purpose: validation, scoping and paging live in ``core/``; errors
are raised as ``webhooks_service.errors`` and mapped by the auth
interceptor. Database work runs in worker threads so the event loop never
waits on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import grpc
from sqlalchemy.engine import Engine

from webhooks.v1 import admin_pb2, admin_pb2_grpc
from webhooks_service.api.auth import require_organisation
from webhooks_service.api.convert import (
    config_to_proto,
    event_type_to_proto,
    log_to_proto,
    optional_time,
    outcome_from_proto,
    signing_scheme_from_proto,
    status_class_from_proto,
    timestamp,
    view_is_full,
)
from webhooks_service.api.insights import AdminInsights
from webhooks_service.api.operations import AdminOperations
from webhooks_service.api.portal import PortalOperations
from webhooks_service.api.signing import SigningOperations
from webhooks_service.config import Settings
from webhooks_service.core import configs, event_types, filter_dry_run, logs
from webhooks_service.core.event_body import struct_to_dict
from webhooks_service.core.server_keys import keyring
from webhooks_service.storage.models import utcnow

Context = grpc.aio.ServicerContext[Any, Any]


class WebhookAdminServicer(
    AdminOperations,
    AdminInsights,
    PortalOperations,
    SigningOperations,
    admin_pb2_grpc.WebhookAdminServicer,
):
    """Configs and logs here; retry, replay, test event, rotation in ``api/operations.py``;
    the event view and endpoint stats in ``api/insights.py``; the key set and the
    ownership challenge in ``api/signing.py``.

    ``notify`` wakes the in-process delivery worker after a retry or replay.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        notify: Callable[[], Any] | None = None,
        clock: Callable[[], datetime] = utcnow,
        stopped: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._notify = notify
        # this process's delivery worker: a config deleted or disabled stops at once
        self._stopped = stopped
        self._clock = clock  # wall clock of portal sessions (tests move it)
        self._init_signing()

    async def ListWebhookConfigs(
        self, request: admin_pb2.ListWebhookConfigsRequest, context: Context
    ) -> admin_pb2.ListWebhookConfigsResponse:
        org = require_organisation()
        rows, token = await asyncio.to_thread(
            configs.list_configs,
            self._engine,
            org,
            page_size=request.page_size,
            page_token=request.page_token,
            secret_key=self._settings.secret_key,
        )
        return admin_pb2.ListWebhookConfigsResponse(
            configs=[config_to_proto(r) for r in rows], next_page_token=token
        )

    async def PutWebhookConfig(
        self, request: admin_pb2.PutWebhookConfigRequest, context: Context
    ) -> admin_pb2.PutWebhookConfigResponse:
        org = require_organisation()
        result = await asyncio.to_thread(
            configs.put_config,
            self._engine,
            self._settings,
            org,
            config_id=request.id,
            url=request.url,
            event_types=list(request.event_types),
            secret=request.secret if request.HasField("secret") else None,
            enabled=request.enabled if request.HasField("enabled") else None,
            description=request.description if request.HasField("description") else None,
            headers=dict(request.headers),
            clear_headers=request.clear_headers,
            ordered=request.ordered if request.HasField("ordered") else None,
            signing_scheme=signing_scheme_from_proto(request.signing_scheme),
            filter_expression=request.filter if request.HasField("filter") else None,
        )
        if not result.config.enabled and self._stopped is not None:
            self._stopped(result.config.id, False)  # before the call returns (issue 27.2)
        self.keys_changed(org)
        self.challenge_in_background(result.config)
        return admin_pb2.PutWebhookConfigResponse(
            config=config_to_proto(result.config),
            secret=result.generated_secret,
            created=result.created,
        )

    async def DeleteWebhookConfig(
        self, request: admin_pb2.DeleteWebhookConfigRequest, context: Context
    ) -> admin_pb2.DeleteWebhookConfigResponse:
        org = require_organisation()
        cancelled = await asyncio.to_thread(
            configs.delete_config, self._engine, org, request.config_id
        )
        if self._stopped is not None:
            self._stopped(request.config_id, True)  # before the call returns (issue 27.2)
        return admin_pb2.DeleteWebhookConfigResponse(cancelled_deliveries=cancelled)

    async def ListDeliveryLogs(
        self, request: admin_pb2.ListDeliveryLogsRequest, context: Context
    ) -> admin_pb2.ListDeliveryLogsResponse:
        org = require_organisation()
        filters = logs.LogFilters(
            config_id=request.config_id,
            event_id=request.event_id,
            event_type=request.event_type,
            outcome=outcome_from_proto(request.outcome),
            status_class=status_class_from_proto(request.status_class),
            since=optional_time(request, "since"),
            until=optional_time(request, "until"),
        )
        rows, token = await asyncio.to_thread(
            logs.list_logs,
            self._engine,
            org,
            page_size=request.page_size,
            page_token=request.page_token,
            filters=filters,
            full=view_is_full(request.view),
            max_bytes=self._settings.log_page_max_bytes,
        )
        ids = keyring(self._engine).ids
        return admin_pb2.ListDeliveryLogsResponse(
            logs=[log_to_proto(r, ids) for r in rows], next_page_token=token
        )

    async def ListEventTypes(
        self, request: admin_pb2.ListEventTypesRequest, context: Context
    ) -> admin_pb2.ListEventTypesResponse:
        # The catalog is the same for every organisation: any key with
        # webhooks:read may read it (no organisation required).
        types = event_types.list_event_types(request.category)
        return admin_pb2.ListEventTypesResponse(event_types=[event_type_to_proto(t) for t in types])

    async def TestWebhookFilter(
        self, request: admin_pb2.TestWebhookFilterRequest, context: Context
    ) -> admin_pb2.TestWebhookFilterResponse:
        org = require_organisation()
        result = await asyncio.to_thread(
            filter_dry_run.dry_run,
            self._engine,
            self._settings,
            org,
            expression=request.filter,
            patterns=list(request.event_types),
            limit=request.limit,
            example_data=(
                struct_to_dict(request.example_data) if request.HasField("example_data") else None
            ),
            example_type=request.example_type,
        )
        response = admin_pb2.TestWebhookFilterResponse(
            examined=result.examined,
            matched=result.matched,
            matches=[
                admin_pb2.FilterMatch(
                    event_id=m.event_id,
                    event_type=m.event_type,
                    occurred_at=timestamp(m.occurred_at),
                )
                for m in result.matches
            ],
            errors=result.errors,
            example_error=result.example_error,
        )
        if result.example_matches is not None:
            response.example_matches = result.example_matches
        return response
