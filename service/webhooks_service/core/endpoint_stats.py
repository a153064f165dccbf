"""GetEndpointStats: an endpoint's last 24 hours for charts, from the hourly aggregates.

The aggregates (``storage/endpoint_stats.py``) are kept as attempts are
recorded, so answering reads at most 24 hours x 22 latency buckets rows
whatever the endpoint's volume (see docs/decisions.md, issue 20). Every hour
of the window is answered, zeros included, oldest first; the window ends at
the end of the current hour. Latency percentiles are estimated from the
histogram: the rank's bucket, interpolated linearly between its bounds (as
Prometheus' ``histogram_quantile`` does); an estimate is within its bucket.

A deleted endpoint's stats stay readable (like its log); another
organisation's configuration, or an unknown one, is NOT_FOUND.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from webhooks_service.core.ids import check_config_id
from webhooks_service.domain import Clock, utcnow
from webhooks_service.errors import NotFound
from webhooks_service.storage import db
from webhooks_service.storage import endpoint_stats as store
from webhooks_service.storage.endpoint_stats import LATENCY_BOUNDS_MS, Hour

__all__ = ["HOURS", "EndpointStats", "endpoint_stats", "percentile"]

HOURS = 24
KEPT = timedelta(hours=2 * HOURS)  # what retention leaves of the aggregates


@dataclass(frozen=True)
class EndpointStats:
    since: datetime
    until: datetime
    hours: list[Hour]  # HOURS of them, oldest first
    attempts: int
    failures: int
    p50_ms: int
    p90_ms: int
    p99_ms: int


def percentile(histogram: dict[int, int], q: float) -> int:
    """The ``q`` quantile (0..1) of a latency histogram, in ms; 0 when empty."""
    total = sum(histogram.values())
    if total == 0:
        return 0
    rank = q * total
    seen = 0
    for bucket in sorted(histogram):
        n = histogram[bucket]
        if seen + n >= rank and n > 0:
            if bucket >= len(LATENCY_BOUNDS_MS):
                return LATENCY_BOUNDS_MS[-1]  # slower than the last bound: at least that
            low = LATENCY_BOUNDS_MS[bucket - 1] if bucket > 0 else 0
            high = LATENCY_BOUNDS_MS[bucket]
            return round(low + (high - low) * (rank - seen) / n)
        seen += n
    return LATENCY_BOUNDS_MS[-1]


def endpoint_stats(
    engine: Engine, organisation_id: str, config_id: str, *, clock: Clock = utcnow
) -> EndpointStats:
    check_config_id(config_id)
    until = store.hour_of(clock()) + timedelta(hours=1)
    since = until - timedelta(hours=HOURS)
    with db.read_transaction(engine) as conn:
        if not store.config_of(conn, organisation_id, config_id):
            raise NotFound(f"webhook configuration {config_id!r} not found")
        aggregates = store.read(conn, config_id, since, until)
    by_hour = {h.start: h for h in aggregates.hours}
    hours = [
        by_hour.get(start, Hour(start, 0, 0))
        for start in (since + timedelta(hours=n) for n in range(HOURS))
    ]
    hist = aggregates.histogram
    return EndpointStats(
        since=since,
        until=until,
        hours=hours,
        attempts=sum(h.attempts for h in hours),
        failures=sum(h.failures for h in hours),
        p50_ms=percentile(hist, 0.50),
        p90_ms=percentile(hist, 0.90),
        p99_ms=percentile(hist, 0.99),
    )
