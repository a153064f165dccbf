"""``webhooks serve``: the gRPC API and the delivery worker in one process.

Start-up: configure logging, open the database and apply pending migrations,
start the gRPC server (health checking, reflection), and run the delivery
worker on the same event loop. SIGINT/SIGTERM stop it gracefully: health
turns NOT_SERVING, the worker stops claiming and gets ``shutdown_grace``
seconds for in-flight attempts, and in-flight RPCs get the same grace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.engine import Engine

from webhooks_service import config
from webhooks_service.api.server import start_server
from webhooks_service.commands import _event_loop
from webhooks_service.commands._database import open_service_database
from webhooks_service.commands._preflight import check_service_addresses
from webhooks_service.config import Settings
from webhooks_service.core import filters
from webhooks_service.core.server_keys import keyring
from webhooks_service.delivery import runner
from webhooks_service.delivery.worker import LocalWorker
from webhooks_service.observability import logging as observability_logging
from webhooks_service.observability import tracing
from webhooks_service.observability.metrics import start_process_metrics

log = logging.getLogger("webhooks_service.serve")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="serve the gRPC API and run the delivery worker",
        description=(
            "Serve the gRPC API (WebhookAdmin, EventPublisher, health, reflection) and run "
            "the delivery worker in the same process. Applies pending migrations first."
        ),
    )
    config.add_arguments(parser, [s.name for s in config.SETTINGS if s.name != "gateway_listen"])
    parser.set_defaults(handler=_serve)


def configure_logging(level: str, fmt: str = "auto") -> None:
    """Logging for serve/worker/run: ``log_format`` json, text or auto (observability/)."""
    observability_logging.configure_logging(level, fmt)


def _serve(args: argparse.Namespace) -> int:
    settings = config.from_args(args)
    configure_logging(settings.log_level, settings.log_format)
    check_service_addresses(settings)
    event_loop = _event_loop.choose(settings.event_loop)  # fails before any migration
    tracing.configure_from_env()  # OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set
    settings, engine = open_service_database(settings, create=True)
    try:
        return _event_loop.run(serve(settings, engine), event_loop, command="serve")
    finally:
        tracing.shutdown()
        engine.dispose()


async def serve(
    settings: Settings,
    engine: Engine,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], Awaitable[None] | None] | None = None,
) -> int:
    """Run API + worker until ``stop`` is set (or SIGINT/SIGTERM); the exit status."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    # Publish wakes the in-process worker, or hands new deliveries to it claimed.
    local = LocalWorker()
    wakeup = local.wakeup
    api = await start_server(settings, engine, notify=wakeup.set, lend=local.lend)
    # Prometheus metrics on their own port (metrics_listen) + the queue gauges.
    metrics = start_process_metrics(
        settings.metrics_listen,
        engine,
        stop,
        public_ids=lambda: keyring(engine).ids.delivery,
        filter_counts=filters.counts,  # publishing runs the filters in this process
    )

    # The worker runs until `stop` is set; `wakeup` is set by the EventPublisher
    # after each commit that left deliveries unclaimed (notify=wakeup.set).
    worker = asyncio.create_task(
        runner.run_worker(
            settings, engine, stop, wakeup=wakeup, observer=metrics.observer, local=local
        ),
        name="delivery-worker",
    )

    print(f"webhooks: serving gRPC on {api.target}", file=sys.stderr, flush=True)
    if on_ready is not None:
        maybe = on_ready(api.target)
        if maybe is not None:
            await maybe
    status = 0
    stopping = asyncio.create_task(stop.wait())
    waiting: set[asyncio.Future[Any]] = {stopping, worker}
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if worker.done() and not stop.is_set():
        exc = worker.exception() if not worker.cancelled() else None
        log.error("delivery worker stopped unexpectedly", exc_info=exc)
        status = 1
    stop.set()
    log.info("shutting down")
    if not worker.done():
        try:
            await asyncio.wait_for(worker, timeout=settings.shutdown_grace + 5)
        except TimeoutError:
            log.warning("delivery worker did not stop in time; cancelling it")
    stopping.cancel()
    await api.stop(grace=settings.shutdown_grace)
    await metrics.close()
    return status
