"""Benchmark GetEndpointStats on an endpoint with a million attempts (not a test).

    .venv/bin/python scripts/bench_stats.py                 # SQLite and PostgreSQL
    .venv/bin/python scripts/bench_stats.py --backend sqlite --rows 200000

For each backend: a fresh database, one endpoint with ``--rows`` attempts
spread over the last 24 hours (latencies 1 ms to 20 s, 1 in 10 failing),
its hourly aggregates as ``finish_batch`` would have folded them in; then,
in the same run:

- ``stats``: ``core.endpoint_stats.endpoint_stats`` (what GetEndpointStats
  does: two GROUP BYs over the endpoint's hourly rows), p50 / p99;
- ``scan``: the same answer computed from ``delivery_attempts`` directly (an
  aggregate over every attempt of the window: what the aggregates avoid),
  once per round;
- ``record``: the hot-path cost, ``endpoint_stats.record`` for a batch of 500
  finished attempts, against ``endpoint_health.record`` for the same batch
  (the upsert it sits next to in ``finish_batch``).

Both answers are checked to agree (attempts, failures per hour).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from bench_logs import _seed_postgres, _seed_sqlite, fresh_database
from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import configs, endpoint_stats, orgs
from webhooks_service.domain import FinishedAttempt, Outcome
from webhooks_service.storage import db, endpoint_health
from webhooks_service.storage import endpoint_stats as stats_store

NOW = datetime.now(UTC)


def _rows(
    count: int, org: str, config_id: str, hist: Counter[tuple[datetime, int, bool]]
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """One event, delivery and attempt per row, evenly over GetEndpointStats' window."""
    start = stats_store.hour_of(NOW) - timedelta(hours=23)  # GetEndpointStats' window
    step = (NOW - start) / (count + 1)
    for n in range(1, count + 1):
        when = start + step * n
        ok = n % 10 != 0
        ms = 1 + (n * 7919) % (200 if n % 50 else 20_000)  # mostly fast, a slow tail
        event_id = f"evt_{n:012d}"
        yield ("event", (n, org, event_id, "reward.claimed", when, "{}", when))
        yield (
            "delivery",
            (n, org, n, config_id, "delivered" if ok else "failed", 1, when, None, when, when),
        )
        outcome = "delivered" if ok else "failed"
        yield (
            "attempt",
            (n, org, n, n, event_id, "reward.claimed", config_id, 1, "https://example.com/h",
             200 if ok else 500, "", False, "", ms, outcome, when, None),
        )  # fmt: skip
        hist[(stats_store.hour_of(when), stats_store.bucket_of(ms), ok)] += 1


def seed(engine: Engine, count: int) -> tuple[str, str]:
    settings = Settings(database_url=str(engine.url))
    org = orgs.create_org(engine, "Bench").id
    config_id = configs.put_config(
        engine, settings, org, config_id="", url="https://example.com/h",
        event_types=["*"], secret=None, enabled=True, description="",
    ).config.id  # fmt: skip
    hist: Counter[tuple[datetime, int, bool]] = Counter()
    rows = _rows(count, org, config_id, hist)
    if db.is_sqlite(engine):
        _seed_sqlite(engine, rows)
    else:
        _seed_postgres(engine, rows)
    # The aggregates finish_batch would have folded in, batch by batch.
    folded: dict[tuple[datetime, int], list[int]] = {}
    for (hour, bucket, ok), n in hist.items():
        cell = folded.setdefault((hour, bucket), [0, 0])
        cell[0] += n
        cell[1] += 0 if ok else n
    table = stats_store._S
    with db.write_transaction(engine) as conn:
        conn.execute(
            sa.insert(table),
            [
                {"config_id": config_id, "hour": h, "bucket": b, "attempts": a, "failures": f}
                for (h, b), (a, f) in folded.items()
            ],
        )
    return org, config_id


def scan(engine: Engine, org: str, config_id: str, since: datetime) -> dict[datetime, list[int]]:
    """The hourly counts and latency percentiles straight from the attempts."""
    sqlite = db.is_sqlite(engine)
    hour = (
        "strftime('%Y-%m-%d %H:00:00', attempted_at)"
        if sqlite
        else "date_trunc('hour', attempted_at)"
    )
    where = "organisation_id = :o AND config_id = :c AND attempted_at >= :s"
    params = {"o": org, "c": config_id, "s": since.replace(tzinfo=None) if sqlite else since}
    with engine.connect() as conn:
        hours = conn.execute(
            sa.text(
                f"SELECT {hour} AS h, count(*), sum(CASE WHEN outcome <> 'delivered' "
                f"THEN 1 ELSE 0 END) FROM delivery_attempts WHERE {where} GROUP BY h"
            ),
            params,
        ).all()
        total = sum(int(r[1]) for r in hours)
        if sqlite:
            for q in (0.5, 0.9, 0.99):
                conn.execute(
                    sa.text(
                        f"SELECT duration_ms FROM delivery_attempts WHERE {where} "
                        "ORDER BY duration_ms LIMIT 1 OFFSET :k"
                    ),
                    {**params, "k": int(total * q)},
                ).scalar()
        else:
            conn.execute(
                sa.text(
                    "SELECT percentile_disc(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP "
                    f"(ORDER BY duration_ms) FROM delivery_attempts WHERE {where}"
                ),
                params,
            ).scalar()
    out = {}
    for h, n, failed in hours:
        start = h if isinstance(h, datetime) else datetime.fromisoformat(h)
        out[start.replace(tzinfo=UTC)] = [int(n), int(failed)]
    return out


def _time(fn: Callable[[], Any], iterations: int) -> tuple[float, float]:
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.99) - 1] * 1000


def _batch(org: str, config_id: str) -> list[FinishedAttempt]:
    return [
        FinishedAttempt(
            delivery_id=0, claim_token="x", attempt=1, organisation_id=org,
            config_id=config_id, event_pk=0, event_id="evt_b", event_type="reward.claimed",
            url="https://example.com/h", outcome=Outcome.DELIVERED if n % 10 else Outcome.FAILED,
            attempted_at=NOW, response_status_code=200, duration_ms=1 + n % 300,
        )
        for n in range(500)
    ]  # fmt: skip


def run(backend: str, rows: int, iterations: int, rounds: int) -> None:
    with fresh_database(backend) as engine:
        started = time.perf_counter()
        org, config_id = seed(engine, rows)
        print(f"{backend}: seeded {rows:,} attempts in {time.perf_counter() - started:.1f} s")
        stats = endpoint_stats.endpoint_stats(engine, org, config_id, clock=lambda: NOW)
        direct = scan(engine, org, config_id, stats.since)
        kept = {h.start: [h.attempts, h.failures] for h in stats.hours if h.attempts}
        assert kept == direct, "the aggregates and the attempts disagree"
        assert stats.attempts == rows, (stats.attempts, rows)
        batch = _batch(org, config_id)
        for n in range(rounds):
            p50, p99 = _time(
                lambda: endpoint_stats.endpoint_stats(engine, org, config_id, clock=lambda: NOW),
                iterations,
            )
            t = time.perf_counter()
            scan(engine, org, config_id, stats.since)
            scanned = (time.perf_counter() - t) * 1000

            def record(fn: Callable[[sa.Connection, list[FinishedAttempt]], None]) -> float:
                samples = []
                for _ in range(20):
                    with engine.connect() as conn:
                        start = time.perf_counter()
                        fn(conn, batch)
                        samples.append(time.perf_counter() - start)
                        conn.rollback()
                return statistics.median(samples) * 1000

            rec_stats, rec_health = record(stats_store.record), record(endpoint_health.record)
            print(
                f"{backend} round {n + 1}: stats p50 {p50:.2f} ms p99 {p99:.2f} ms | "
                f"scan of the {rows:,} attempts {scanned:.0f} ms "
                f"({scanned / p50:.0f}x stats p50) | "
                f"record 500: stats {rec_stats:.2f} ms, health {rec_health:.2f} ms "
                f"({rec_stats / rec_health:.2f}x)",
                flush=True,
            )
        print(
            f"  p50/p90/p99 latency answered: {stats.p50_ms}/{stats.p90_ms}/{stats.p99_ms} ms",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        run(backend, args.rows, args.iterations, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
