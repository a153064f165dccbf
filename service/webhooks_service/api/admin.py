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
from google.protobuf import struct_pb2, timestamp_pb2
from sqlalchemy.engine import Engine

from webhooks.v1 import admin_pb2, admin_pb2_grpc
from webhooks_service.api.auth import require_organisation
from webhooks_service.api.operations import AdminOperations
from webhooks_service.api.portal import PortalOperations
from webhooks_service.config import Settings
from webhooks_service.core import configs, endpoint_headers, event_types, logs
from webhooks_service.core.ids import PublicIds
from webhooks_service.core.server_keys import keyring
from webhooks_service.errors import FieldViolation, InvalidArgument
from webhooks_service.storage.endpoint_health import EndpointHealth
from webhooks_service.storage.models import utcnow

Context = grpc.aio.ServicerContext[Any, Any]


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def outcome_to_proto(outcome: str) -> admin_pb2.Outcome.ValueType:
    return admin_pb2.Outcome.Value("OUTCOME_" + outcome.upper())


def outcome_from_proto(value: int) -> str:
    """The stored outcome for a filter value; "" for unspecified."""
    if value == admin_pb2.OUTCOME_UNSPECIFIED:
        return ""
    try:
        return admin_pb2.Outcome.Name(value).removeprefix("OUTCOME_").lower()  # type: ignore[arg-type]
    except ValueError as exc:
        raise InvalidArgument(
            "invalid outcome filter", [FieldViolation("outcome", f"unknown value {value}")]
        ) from exc


def view_is_full(value: int) -> bool:
    """DELIVERY_LOG_VIEW_BASIC -> False; FULL or unspecified (the default) -> True."""
    if value == admin_pb2.DELIVERY_LOG_VIEW_BASIC:
        return False
    if value in (admin_pb2.DELIVERY_LOG_VIEW_FULL, admin_pb2.DELIVERY_LOG_VIEW_UNSPECIFIED):
        return True
    raise InvalidArgument(
        "invalid view", [FieldViolation("view", f"unknown value {value}; BASIC or FULL")]
    )


def config_to_proto(row: configs.ConfigRow) -> admin_pb2.WebhookConfig:
    return admin_pb2.WebhookConfig(
        id=row.id,
        url=row.url,
        event_types=list(row.event_types),
        enabled=row.enabled,
        description=row.description,
        secret_hint=configs.secret_hint(row.secret),
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        disabled_reason=row.disabled_reason,
        health=health_to_proto(row.health),
        # Rows from core/configs carry their headers opened: names only, never values.
        header_names=endpoint_headers.header_names(row.headers, str),
    )


def health_to_proto(h: EndpointHealth) -> admin_pb2.EndpointHealth:
    out = admin_pb2.EndpointHealth(
        attempts=h.attempts, successes=h.successes, failures=h.failures, last_error=h.last_error
    )
    for name, value in (
        ("last_success_at", h.last_success_at),
        ("last_error_at", h.last_error_at),
        ("failing_since", h.failing_since),
    ):
        if value is not None:
            getattr(out, name).CopyFrom(timestamp(value))
    return out


def log_to_proto(row: logs.LogRow, ids: PublicIds) -> admin_pb2.DeliveryLog:
    """One log entry; ``ids`` turns the integer keys into the opaque public ids."""
    entry = admin_pb2.DeliveryLog(
        id=ids.attempt(row.id),
        event_id=row.event_id,
        event_type=row.event_type,
        config_id=row.config_id,
        delivery_id=ids.delivery(row.delivery_id),
        attempt=row.attempt,
        url=row.url,
        request_body=row.request_body,
        response_status_code=row.response_status_code,
        response_body=row.response_body,
        response_body_truncated=row.response_body_truncated,
        error=row.error,
        duration_ms=row.duration_ms,
        outcome=outcome_to_proto(row.outcome),
        attempted_at=timestamp(row.attempted_at),
    )
    if row.next_attempt_at is not None:
        entry.next_attempt_at.CopyFrom(timestamp(row.next_attempt_at))
    return entry


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def event_type_to_proto(info: event_types.EventTypeInfo) -> admin_pb2.EventTypeDefinition:
    return admin_pb2.EventTypeDefinition(
        name=info.name,
        category=info.category,
        description=info.description,
        schema=struct(info.schema),
        example=struct(info.example),
    )


class WebhookAdminServicer(AdminOperations, PortalOperations, admin_pb2_grpc.WebhookAdminServicer):
    """Configs and logs here; retry, replay, test event, rotation in ``api/operations.py``.

    ``notify`` wakes the in-process delivery worker after a retry or replay.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        notify: Callable[[], Any] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._notify = notify
        self._clock = clock  # wall clock of portal sessions (tests move it)

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
        )
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
