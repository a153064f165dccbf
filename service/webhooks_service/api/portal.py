"""CreatePortalSession and RevokePortalSession: a mixin of ``WebhookAdminServicer``.

The use cases are in ``core/portal.py``; this module only builds the
dashboard link. Its base is the operator's ``dashboard_url`` when set, else
the gateway address the request came through: the gateway passes
``x-webhooks-gateway-origin`` (``<scheme>://<host>`` of the REST request,
overwritten on every request, so a client cannot pick another), else the
gateway's configured listen address. The token goes in the URL fragment
(``#token=…&expires_at=…&scopes=…``), which browsers never send to a server (so it is in no access
log) nor in a ``Referer``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import grpc
from google.protobuf import timestamp_pb2

from webhooks.v1 import admin_pb2
from webhooks_service.api.auth import current_principal
from webhooks_service.config import Settings
from webhooks_service.core import portal

Context = grpc.aio.ServicerContext[Any, Any]

ORIGIN_HEADER = "x-webhooks-gateway-origin"
DASHBOARD_PATH = "/dashboard/"


def _gateway_origin(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == ORIGIN_HEADER:
            text = value.decode() if isinstance(value, bytes) else str(value)
            parts = urlsplit(text.strip())
            if parts.scheme in ("http", "https") and parts.netloc and not parts.path:
                return f"{parts.scheme}://{parts.netloc}"
    return ""


def link_for(settings: Settings, made: portal.NewSession, origin: str = "") -> str:
    """The dashboard link for a new session: ``settings.dashboard_url``, else the
    gateway ``origin`` (scheme://host:port), else the configured gateway address.
    The fragment carries the token, and the session's end and scopes (for the
    page to show; the server decides)."""
    base = settings.dashboard_url
    if not base:
        base = (origin or f"http://{settings.gateway_listen}") + DASHBOARD_PATH
    fragment = urlencode(
        {
            "token": made.token,
            "expires_at": made.row.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "scopes": " ".join(sorted(made.row.scopes)),
        },
        quote_via=quote,
    )
    return f"{base}#{fragment}"


def dashboard_link(settings: Settings, context: Context, made: portal.NewSession) -> str:
    return link_for(settings, made, _gateway_origin(context))


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


class PortalOperations:
    _settings: Settings
    _engine: Any
    _clock: Callable[[], datetime]

    async def CreatePortalSession(
        self, request: admin_pb2.CreatePortalSessionRequest, context: Context
    ) -> admin_pb2.CreatePortalSessionResponse:
        caller = current_principal().as_caller()
        made = await asyncio.to_thread(
            portal.create_session,
            self._engine,
            caller,
            organisation_id=request.organisation_id,
            scopes=list(request.scopes),
            ttl_seconds=request.ttl_seconds,
            default_ttl_seconds=self._settings.portal_session_ttl,
            now=self._clock(),
        )
        return admin_pb2.CreatePortalSessionResponse(
            url=dashboard_link(self._settings, context, made),
            expires_at=_timestamp(made.row.expires_at),
            token=made.token,
            session_id=made.row.id,
            organisation_id=made.row.organisation_id,
            scopes=sorted(made.row.scopes),
        )

    async def RevokePortalSession(
        self, request: admin_pb2.RevokePortalSessionRequest, context: Context
    ) -> admin_pb2.RevokePortalSessionResponse:
        revoked = await asyncio.to_thread(
            portal.revoke_session,
            self._engine,
            current_principal().as_caller(),
            request.session_id,
            now=self._clock(),
        )
        return admin_pb2.RevokePortalSessionResponse(revoked=revoked)
