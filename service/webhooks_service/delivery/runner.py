"""Running the delivery worker in a process: the entry point and the wake-ups.

``run_worker`` is what ``webhooks serve`` and ``webhooks worker`` call. The
worker wakes up within milliseconds of a publish:

* in the same process, publish sets the ``wakeup`` event after its commit
  (``webhooks serve`` passes one event to both the publisher servicer, as its
  ``notify`` callback ``wakeup.set``, and to ``run_worker``);
* across processes on PostgreSQL, the publish transaction sends
  ``NOTIFY webhooks_deliveries``, and ``storage.listen.listen_for_deliveries`` holds a
  dedicated psycopg connection that LISTENs and sets the same event.

Faster still, a publish in the same process hands its new deliveries to
the worker already claimed (``LocalWorker.lend``, see ``worker.py``), so
they need neither a wake-up nor a claim query; the wake-ups are for the
deliveries the worker had no free slot for.

The poll interval remains as a fallback (retries coming due, lost
notifications, SQLite across processes).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core.endpoint_health import run_health_sweep
from webhooks_service.core.retention import run_retention
from webhooks_service.core.secrets_at_rest import check_key
from webhooks_service.delivery.worker import DeliveryWorker, LocalWorker
from webhooks_service.domain import Clock, utcnow
from webhooks_service.netpolicy import register_own_listen_address
from webhooks_service.observability.metrics import DeliveryObserver
from webhooks_service.storage import db
from webhooks_service.storage.listen import listen_for_deliveries

log = logging.getLogger(__name__)


async def run_worker(
    settings: Settings,
    engine: Engine,
    stop: asyncio.Event,
    wakeup: asyncio.Event | None = None,
    *,
    clock: Clock = utcnow,
    observer: DeliveryObserver | None = None,
    local: LocalWorker | None = None,
) -> None:
    """Deliver until ``stop`` is set; then finish in-flight attempts and release the rest.

    Pass the ``wakeup`` event that publish sets (in-process wake-up); one is
    created when omitted. On PostgreSQL a LISTEN task sets it as well.
    Retention (``core.retention.run_retention``, hourly) and the endpoint
    health sweep (``core.endpoint_health``, every minute) run alongside, so
    ``webhooks serve`` and ``webhooks worker`` both prune and auto-disable.
    ``observer`` (metrics, per-attempt log lines) defaults to one whose
    metrics nobody serves, so the log lines are always written.
    ``local``: the handle publish in this process holds (its ``wakeup`` is
    used when ``wakeup`` is omitted); the worker is attached to it while it
    runs, so that publish can hand new deliveries over.
    """
    wakeup = wakeup or (local.wakeup if local is not None else asyncio.Event())
    await asyncio.to_thread(check_key, engine, settings.secret_key)  # wrong key: stop now
    worker = DeliveryWorker(settings, engine, clock=clock, observer=observer or DeliveryObserver())
    helpers = [
        asyncio.create_task(run_retention(settings, engine, stop, clock=clock)),
        asyncio.create_task(run_health_sweep(settings, engine, stop, clock=clock)),
    ]
    if not db.is_sqlite(engine):
        helpers.append(asyncio.create_task(listen_for_deliveries(engine, wakeup)))
    if local is not None:
        local.worker = worker
    # The configured listeners of this deployment (gRPC, REST gateway, metrics)
    # are never delivery targets, even when a separate process binds them.
    forget = [
        register_own_listen_address(listen)
        for listen in (settings.grpc_listen, settings.gateway_listen, settings.metrics_listen)
    ]
    try:
        await worker.run(stop, wakeup)
    finally:
        for forget_one in forget:
            forget_one()
        if local is not None and local.worker is worker:
            local.worker = None
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
