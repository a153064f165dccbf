"""What a shared limit costs per call (issue 26, item 3), SQLite and PostgreSQL.

Measured in one run, against the in-process token bucket the limits used to
be (``RateLimiter.acquire``, the baseline):

- ``key lookup``: one primary-key read, what each cache miss of a key check
  already costs (for scale);
- ``take``: one shared take (``SharedBuckets.take``: a short write transaction
  on the bucket's row) — what each failed authentication and each lease costs;
- ``acquire, default``: ``SharedLimiter.acquire`` of one busy key at the
  default admin limit (50/s, bursts of 100: leases of 5), per call, while the
  key is within its limit;
- ``acquire, refused``: the same key once its bucket is empty (answered from
  the process's memory until a token is due).

    .venv/bin/python scripts/bench_auth_limits.py [--backend sqlite|postgres|both] [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from bench_logs import fresh_database
from sqlalchemy.engine import Engine

from webhooks_service.core.limits import RateLimiter, SharedBuckets, SharedLimiter
from webhooks_service.storage import db
from webhooks_service.storage import keys as key_store


def _key_read(engine: Engine) -> None:
    """What every cache miss of a key check costs: one primary-key read."""
    with db.read_transaction(engine) as conn:
        key_store.get(conn, "key_bench")


def _per_call_us(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


async def _acquire_us(limiter: SharedLimiter, key: str, calls: int) -> tuple[float, int]:
    start = time.perf_counter()
    refused = 0
    for _ in range(calls):
        refused += (await limiter.acquire(key)) is not None
    return (time.perf_counter() - start) / calls * 1e6, refused


def measure(backend: str, calls: int) -> list[str]:
    with fresh_database(backend) as engine:
        buckets = SharedBuckets(engine)
        local = RateLimiter(1e9, 1_000_000)
        baseline = _per_call_us(lambda: local.acquire("key_bench"), calls)
        read = _per_call_us(lambda: _key_read(engine), calls)
        take = _per_call_us(
            lambda: buckets.take("bench:take", want=1, rate=1e9, capacity=1e12), calls
        )
        # within the limit: a rate the calls never reach, the default burst and lease
        busy = SharedLimiter(buckets, "bench", 1e6, 100)
        busy.lease = SharedLimiter(buckets, "x", 50, 100).lease
        within, _ = asyncio.run(_acquire_us(busy, "key_busy", calls))
        # past the limit: 1 call/s allowed, so nearly every call is refused
        tight = SharedLimiter(buckets, "bench", 1.0, 1)
        refused_us, refused = asyncio.run(_acquire_us(tight, "key_tight", calls))
    return [
        f"{backend:8s} in-process bucket (baseline)      {baseline:8.1f} µs/call  1.0x",
        f"{backend:8s} key lookup (1 read, for scale)    {read:8.1f} µs/call  "
        f"{read / baseline:.0f}x",
        f"{backend:8s} shared take (1 write transaction) {take:8.1f} µs/call  "
        f"{take / baseline:.0f}x",
        f"{backend:8s} shared acquire, default lease {busy.lease}   {within:8.1f} µs/call  "
        f"{within / baseline:.0f}x",
        f"{backend:8s} shared acquire, refused           {refused_us:8.1f} µs/call  "
        f"{refused_us / baseline:.0f}x  ({refused} of {calls} refused)",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        for line in measure(backend, args.calls):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
