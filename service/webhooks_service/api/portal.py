"""CreatePortalSession and RevokePortalSession: a mixin of ``WebhookAdminServicer``.

The use cases are in ``core/portal.py``; this module only builds the
dashboard link. Its base is configuration, never a request header (issue 27.4:
a ``Host: evil.example`` once wrote the link): the operator's
``dashboard_url`` when set, else the gateway's configured listen address
(``gateway_listen``; a wildcard host such as ``0.0.0.0`` is replaced by this
machine's name). The token goes in the URL fragment
(``#token=…&expires_at=…&scopes=…``), which browsers never send to a server (so it is in no access
log) nor in a ``Referer``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import grpc
from google.protobuf import timestamp_pb2

from webhooks.v1 import admin_pb2
from webhooks_service.api.auth import current_principal
from webhooks_service.config import Settings
from webhooks_service.core import portal

Context = grpc.aio.ServicerContext[Any, Any]

DASHBOARD_PATH = "/dashboard/"
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})


def dashboard_base(settings: Settings, gateway: str = "") -> str:
    """``settings.dashboard_url``, else the ``gateway``'s own address (what
    ``webhooks run`` knows once Envoy listens), else
    ``http://<gateway_listen>/dashboard/``: from configuration only, whatever
    a request carried."""
    if settings.dashboard_url:
        return settings.dashboard_url
    if gateway:
        return gateway + DASHBOARD_PATH
    host, _, port = settings.gateway_listen.rpartition(":")
    if host in _WILDCARD_HOSTS:
        host = socket.gethostname()
    return f"http://{host}:{port}{DASHBOARD_PATH}"


def link_for(settings: Settings, made: portal.NewSession, gateway: str = "") -> str:
    """The dashboard link for a new session (:func:`dashboard_base`). The
    fragment carries the token, and the session's end and scopes (for the
    page to show; the server decides)."""
    base = dashboard_base(settings, gateway)
    fragment = urlencode(
        {
            "token": made.token,
            "expires_at": made.row.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "scopes": " ".join(sorted(made.row.scopes)),
        },
        quote_via=quote,
    )
    return f"{base}#{fragment}"


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
            url=link_for(self._settings, made),
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
