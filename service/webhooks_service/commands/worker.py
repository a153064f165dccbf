"""``webhooks worker``: only the delivery worker (no API), for scaling out.

Any number of worker processes, on any number of machines, share one
PostgreSQL database: they claim due deliveries with ``FOR UPDATE SKIP
LOCKED`` and wake up on ``NOTIFY webhooks_deliveries`` from publishers in
other processes. (On SQLite a separate worker process works too, but only
notices new events on its poll interval; ``webhooks serve`` wakes its
in-process worker immediately.) SIGINT/SIGTERM: stop claiming, give in-flight
attempts ``shutdown_grace`` seconds, release the rest, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from sqlalchemy.engine import Engine

from webhooks_service import config
from webhooks_service.commands import _event_loop
from webhooks_service.commands._database import open_service_database
from webhooks_service.commands._preflight import check_service_addresses
from webhooks_service.config import Settings
from webhooks_service.core.server_keys import keyring
from webhooks_service.delivery.runner import run_worker
from webhooks_service.observability import tracing
from webhooks_service.observability.logging import configure_logging
from webhooks_service.observability.metrics import start_process_metrics

WORKER_SETTINGS = [
    "database_url",
    "log_level",
    "retry_schedule",
    "allowed_target_networks",
    "connect_timeout",
    "attempt_timeout",
    "response_body_cap",
    "max_in_flight",
    "max_in_flight_per_endpoint",
    "claim_batch_size",
    "lease_seconds",
    "poll_interval",
    "shutdown_grace",
    "secret_key",
    "log_format",
    "event_loop",
    "metrics_listen",
    "endpoint_failure_disable_after",
]


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "worker",
        help="run only the delivery worker (scale out next to `serve`)",
        description=(
            "Claim due deliveries, POST them signed, log every attempt and schedule retries. "
            "Applies pending migrations first."
        ),
    )
    config.add_arguments(parser, WORKER_SETTINGS)
    parser.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    settings = config.from_args(args)
    configure_logging(settings.log_level, settings.log_format)
    check_service_addresses(settings, grpc=False)
    event_loop = _event_loop.choose(settings.event_loop)  # fails before any migration
    tracing.configure_from_env()  # OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set
    settings, engine = open_service_database(settings, create=True)
    try:
        _event_loop.run(work(settings, engine), event_loop, command="worker")
    finally:
        tracing.shutdown()
        engine.dispose()
    return 0


async def work(settings: Settings, engine: Engine, stop: asyncio.Event | None = None) -> None:
    """Run the worker until ``stop`` is set or SIGINT/SIGTERM arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(
        f"webhooks: delivery worker running on {engine.url.render_as_string(hide_password=True)}",
        file=sys.stderr,
        flush=True,
    )
    metrics = start_process_metrics(
        settings.metrics_listen, engine, stop, public_ids=lambda: keyring(engine).ids.delivery
    )
    try:
        await run_worker(settings, engine, stop, observer=metrics.observer)
    finally:
        await metrics.close()
