"""Prometheus metrics of a serve / worker process, on their own HTTP port.

One ``Metrics`` per process, with its own registry (tests run several in one
process). Exposed by ``start_metrics_server`` on ``metrics_listen`` (default
127.0.0.1:9464, ``GET /metrics``; empty disables), prometheus_client's own
threaded HTTP server, so a slow scrape never touches the event loop.

* ``webhooks_delivery_attempts_total{outcome}``: attempts recorded, by
  outcome (delivered, retry_scheduled, failed, dead). Deliveries finished
  without a request (endpoint disabled) are not attempts.
* ``webhooks_delivery_attempt_duration_seconds``: histogram of attempt
  latency (request sent to response read, or the error).
* ``webhooks_deliveries_claimed_total``: deliveries claimed by this process;
  ``rate()`` of it is claims per second.
* ``webhooks_queue_pending_deliveries``, ``webhooks_queue_due_deliveries``
  and ``webhooks_queue_oldest_due_age_seconds``: the queue as a whole
  (every process reports the same values), read every ``QUEUE_POLL_SECONDS``
  by ``run_queue_gauges``, never on the scrape or delivery path.
* ``webhooks_filter_events_total{config_id, reason}``: events of a
  subscribed type that a configuration's payload filter kept from it, in
  this process (``reason``: ``not_matched``, or ``error`` when the filter
  failed at run time); read on the scrape from the counts the commands
  inject (``filter_counts``: ``core.filters.counts``, a floor above; one
  series pair per configuration whose filter skipped something, at most
  ``filters.COUNTED_CONFIGS``).

The worker calls ``DeliveryObserver.claimed`` after each claim and
``recorded`` after each batch is written: per batch, not per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from webhooks_service.domain import Outcome
from webhooks_service.errors import ConfigurationError
from webhooks_service.hostport import parse_address
from webhooks_service.netpolicy import register_own_listener
from webhooks_service.observability.logging import log_attempts
from webhooks_service.storage.models import utcnow
from webhooks_service.storage.queue_stats import queue_stats

if TYPE_CHECKING:
    from webhooks_service.domain import FinishedAttempt

log = logging.getLogger(__name__)

OUTCOMES = tuple(o.value for o in Outcome)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)
QUEUE_POLL_SECONDS = 5.0

Clock = Callable[[], datetime]


class Metrics:
    """The process's metrics (one registry)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, filter_counts: FilterCounts | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # The standard process_* (CPU, memory, open files) and python_* series:
        # a process's CPU is what sizing workers is read from (docs/operations.md).
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.attempts = Counter(
            "webhooks_delivery_attempts",
            "Delivery attempts recorded, by outcome",
            ["outcome"],
            registry=r,
        )
        for outcome in OUTCOMES:
            self.attempts.labels(outcome)  # every series exists from the start
        self.attempt_seconds = Histogram(
            "webhooks_delivery_attempt_duration_seconds",
            "Delivery attempt latency: request sent to response read (or error)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.claimed = Counter(
            "webhooks_deliveries_claimed", "Deliveries claimed by this process", registry=r
        )
        self.pending = Gauge(
            "webhooks_queue_pending_deliveries",
            "Deliveries not finished yet (due, waiting for a retry, or being attempted)",
            registry=r,
        )
        self.due = Gauge(
            "webhooks_queue_due_deliveries", "Deliveries due now and not claimed", registry=r
        )
        self.oldest_due_age = Gauge(
            "webhooks_queue_oldest_due_age_seconds",
            "How long the oldest due, unclaimed delivery has been waiting (0: none)",
            registry=r,
        )
        if filter_counts is not None:
            r.register(FilterCollector(filter_counts))


# (config id, events its filter skipped, of which evaluation errors) in this process.
FilterCounts = Callable[[], Iterable[tuple[str, int, int]]]


class FilterCollector(Collector):
    """``webhooks_filter_events_total`` from the process's filter counts (core/filters.py)."""

    def __init__(self, counts: FilterCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "webhooks_filter_events",
            "Events of a subscribed type kept from a configuration by its payload filter",
            labels=["config_id", "reason"],
        )
        for config_id, skipped, errors in self._counts():
            family.add_metric([config_id, "not_matched"], skipped - errors)
            family.add_metric([config_id, "error"], errors)
        yield family


# Reads the database's keyring (core/server_keys.py, given by the commands, a
# floor above): delivery number -> its public dlv_ id. It may fail while the
# database is away; it is asked again for the next batch.
PublicIds = Callable[[], Callable[[int], str]]


class DeliveryObserver:
    """What the delivery worker reports to: metrics and the per-attempt log line."""

    def __init__(self, metrics: Metrics | None = None, public_ids: PublicIds | None = None) -> None:
        self.metrics = metrics or Metrics()
        self._public_ids = public_ids  # for the public (opaque) delivery ids in the log lines
        self._public_id: Callable[[int], str] | None = None

    def _delivery_ids(self) -> Callable[[int], str] | None:
        if self._public_id is None and self._public_ids is not None:
            try:
                self._public_id = self._public_ids()
            except Exception as exc:  # the database is away: internal numbers this time
                log.debug("public ids not available for the log yet: %s", exc)
        return self._public_id

    def claimed(self, count: int) -> None:
        if count:
            self.metrics.claimed.inc(count)

    def recorded(self, batch: Sequence[FinishedAttempt]) -> None:
        m = self.metrics
        counts: dict[str, int] = {}
        for f in batch:
            if f.attempted:
                counts[f.outcome] = counts.get(f.outcome, 0) + 1
                m.attempt_seconds.observe(f.duration_ms / 1000.0)
        for outcome, n in counts.items():
            m.attempts.labels(outcome).inc(n)
        log_attempts(batch, self._delivery_ids())


@dataclass
class MetricsServer:
    host: str
    port: int
    _server: Any
    _forget: Callable[[], None] = lambda: None  # drops it from the target guard's own listeners

    def close(self) -> None:
        self._forget()
        self._server.shutdown()
        self._server.server_close()


def start_metrics_server(listen: str, metrics: Metrics) -> MetricsServer:
    """Serve ``GET /metrics`` on ``listen`` (``HOST:PORT``; port 0 picks one)."""
    address = parse_address(listen, what="--metrics-listen", allow_zero_port=True)
    host, port = address.host, address.port
    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {listen}: {exc.strerror}") from exc
    bound = int(server.server_port)
    # Deliveries never go to our own listeners (netpolicy.py).
    return MetricsServer(host, bound, server, register_own_listener(host, bound))


async def run_queue_gauges(
    metrics: Metrics,
    engine: Engine,
    stop: asyncio.Event,
    interval: float = QUEUE_POLL_SECONDS,
    *,
    clock: Clock = utcnow,
) -> None:
    """Refresh the queue gauges every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        try:
            stats = await asyncio.to_thread(queue_stats, engine, clock())
        except Exception as exc:  # the database is away: health reports it; keep polling
            log.debug("queue gauges not refreshed: %s", exc)
        else:
            metrics.pending.set(stats.pending)
            metrics.due.set(stats.due)
            metrics.oldest_due_age.set(stats.oldest_due_age_seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


@dataclass
class ProcessMetrics:
    """Metrics of a running serve/worker process: what ``start_process_metrics`` started."""

    observer: DeliveryObserver
    server: MetricsServer | None
    gauges: asyncio.Task[None]

    async def close(self) -> None:
        self.gauges.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.gauges
        if self.server is not None:
            await asyncio.to_thread(self.server.close)


def start_process_metrics(
    listen: str,
    engine: Engine,
    stop: asyncio.Event,
    *,
    clock: Clock = utcnow,
    public_ids: PublicIds | None = None,
    filter_counts: FilterCounts | None = None,
) -> ProcessMetrics:
    """The metrics server (unless ``listen`` is empty) and the queue gauges' task.

    A metrics address that cannot be bound (two processes on one host with the
    default port) is logged as an error and the process runs without metrics.
    """
    metrics = Metrics(filter_counts=filter_counts)
    server: MetricsServer | None = None
    if listen:
        try:
            server = start_metrics_server(listen, metrics)
        except ConfigurationError as exc:
            # Deliveries matter more than their metrics: run on, loudly.
            log.error("%s; running without a metrics endpoint", exc)
        else:
            log.info("metrics on http://%s:%d/metrics", server.host, server.port)
    gauges = asyncio.create_task(run_queue_gauges(metrics, engine, stop, clock=clock))
    return ProcessMetrics(DeliveryObserver(metrics, public_ids), server, gauges)
