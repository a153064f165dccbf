"""Assemble the gRPC API server: interceptor, servicers, health, reflection.

:func:`start_server` builds and starts a ``grpc.aio`` server on the running
event loop. ``webhooks serve`` and the test helper (``tests/support``) both
use it, so the tests exercise exactly what production runs.

- WebhookAdmin always; EventPublisher once ``webhooks_service.api.publisher``
  exists (the delivery engine provides it).
- gRPC health checking (``grpc.health.v1.Health``): overall and per service
  SERVING while the database answers (probed every few seconds), NOT_SERVING
  while it does not and during graceful shutdown.
- Server reflection (``grpc.reflection.v1`` and ``v1alpha``) lists both
  webhooks.v1 services, read from the descriptors, whether or not the publisher is installed yet.
- ``SO_REUSEPORT`` is off, so a port in use is a clear ConfigurationError
  rather than two servers silently sharing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from sqlalchemy.engine import Engine

from webhooks.v1 import admin_pb2, admin_pb2_grpc, publisher_pb2, publisher_pb2_grpc
from webhooks_service.api.admin import WebhookAdminServicer
from webhooks_service.api.auth import AuthInterceptor
from webhooks_service.api.publisher import EventPublisherServicer
from webhooks_service.api.reflection import add_reflection
from webhooks_service.config import Settings
from webhooks_service.core.publishing import Lend
from webhooks_service.core.secrets_at_rest import check_key
from webhooks_service.errors import ConfigurationError
from webhooks_service.hostport import parse_address
from webhooks_service.netpolicy import register_own_listener
from webhooks_service.observability import tracing
from webhooks_service.observability.health import run_database_probe
from webhooks_service.storage.models import utcnow

log = logging.getLogger(__name__)

ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["WebhookAdmin"].full_name
PUBLISHER_SERVICE = publisher_pb2.DESCRIPTOR.services_by_name["EventPublisher"].full_name
WEBHOOKS_SERVICES: tuple[str, ...] = (ADMIN_SERVICE, PUBLISHER_SERVICE)

SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_permit_without_calls", 1),
    # Headers are read before authentication: small, but above the gateway's
    # 16 KiB header limit plus what Envoy adds, so that anything the gateway
    # lets through is not refused here (that was a 429 without Retry-After).
    ("grpc.max_metadata_size", 32 * 1024),
    ("grpc.absolute_max_metadata_size", 64 * 1024),
]


@dataclass
class ApiServer:
    """A started API server. ``port`` is the bound port (useful with port 0)."""

    server: grpc.aio.Server
    port: int
    host: str
    health: HealthServicer
    probe: asyncio.Task[None] | None = None  # database reachability -> health status
    forget: Callable[[], None] = lambda: None  # leaves the target guard's own listeners
    admin: WebhookAdminServicer | None = None  # its background challenges end with the server

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def stop(self, grace: float | None = 5.0) -> None:
        """Report NOT_SERVING, let in-flight calls finish for ``grace`` seconds, stop."""
        if self.probe is not None:
            self.probe.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.admin is not None:
            await self.admin.end_challenges(grace or 0.0)
        self.forget()

    async def wait(self) -> None:
        await self.server.wait_for_termination()


async def start_server(
    settings: Settings,
    engine: Engine,
    *,
    listen: str | None = None,
    notify: Callable[..., Any] | None = None,
    lend: Lend | None = None,
    wall_clock: Callable[[], datetime] | None = None,
) -> ApiServer:
    """Build and start the API server on ``listen`` (default ``settings.grpc_listen``).

    ``notify`` is handed to the EventPublisher servicer (it wakes the
    in-process delivery worker after a publish commits); ``lend``
    (``delivery.worker.LocalWorker.lend``) lets it hand new deliveries to
    that worker already claimed. ``wall_clock`` (tests) moves the time portal
    sessions are checked and minted against.
    """
    listen = listen or settings.grpc_listen
    host = parse_address(listen, what="listen address", allow_zero_port=True).host
    # A missing or wrong WEBHOOKS_SECRET_KEY stops start-up with one clear line.
    await asyncio.to_thread(check_key, engine, settings.secret_key)
    clock = wall_clock or utcnow
    interceptors: list[grpc.aio.ServerInterceptor] = [
        AuthInterceptor(engine, settings=settings, wall_clock=clock)
    ]
    if tracing.enabled():  # outermost: the span covers auth and the error mapping
        interceptors.insert(0, tracing.TracingInterceptor())
    server = grpc.aio.server(interceptors=interceptors, options=SERVER_OPTIONS)
    admin = WebhookAdminServicer(settings, engine, notify=notify, clock=clock)
    admin_pb2_grpc.add_WebhookAdminServicer_to_server(admin, server)
    publisher_pb2_grpc.add_EventPublisherServicer_to_server(
        EventPublisherServicer(settings=settings, engine=engine, notify=notify, lend=lend), server
    )

    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    add_reflection(
        server, (*WEBHOOKS_SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    )
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as exc:
        port = 0
        cause: Exception | None = exc
    else:
        cause = None
    if (port == 0 and not listen.endswith(":0")) or cause is not None:
        raise ConfigurationError(
            f"cannot listen on {listen}: address already in use or not available"
        ) from cause
    await server.start()
    serving = health_pb2.HealthCheckResponse.SERVING
    names = ("", ADMIN_SERVICE, PUBLISHER_SERVICE)
    for name in names:
        await health.set(name, serving)
    # From now on the status follows the database (observability/health.py).
    probe = asyncio.create_task(run_database_probe(engine, health, names))
    log.info("gRPC API listening on %s:%d", host, port)
    # No delivery may reach this listener, whatever the allow-list (netpolicy.py).
    forget = register_own_listener(host, port)
    return ApiServer(server, port, host, health, probe, forget, admin)
