"""Limits that hold across every process of a deployment (issue 26, item 3).

The counter is the database (``storage/rate_buckets.py``): one row per token
bucket, taken from in a short write transaction. What uses it:

- per-key call limits (``api/throttle.py``), through :class:`SharedLimiter`:
  a process takes a *lease* of a few tokens at a time (about a tenth of a
  second's worth, :data:`LEASE_SECONDS`) and spends them locally, so a busy
  key costs one database write per lease, not per call; leased tokens not
  spent within :data:`LEASE_LIFETIME` are dropped (never more than the
  shared bucket gave out is spent, across all processes);
- failed authentications per client address (``api/throttle.py``), one
  token per failure, taken at once (no lease: the count is exact);
- the organisations' replay and test-event budgets (``core/redelivery.py``).

None of it is on the delivery path: the worker never takes a token. When the
database cannot be reached the limiter falls back to a bucket in this process
(the call itself will then most likely fail on the database anyway).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from webhooks_service.errors import DatabaseUnavailable
from webhooks_service.storage import db
from webhooks_service.storage import rate_buckets as store
from webhooks_service.storage.rate_buckets import Take

__all__ = [
    "LEASE_LIFETIME",
    "LEASE_SECONDS",
    "RateLimiter",
    "SharedBuckets",
    "SharedLimiter",
    "Take",
]

log = logging.getLogger(__name__)

LEASE_SECONDS = 0.1
"""A lease is this much of a key's rate (at least one token, at most a quarter of its burst)."""
LEASE_LIFETIME = 1.0
"""Seconds a process may spend a lease; what is left then is dropped."""
PRUNE_EVERY = 10.0
_MAX_LOCAL = 100_000


_pruned: dict[str, float] = {}  # database URL -> when this process last pruned
_prune_lock = threading.Lock()


class SharedBuckets:
    """Token buckets in the database. Synchronous: call from a worker thread."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self.clock = clock

    def take(
        self,
        name: str,
        *,
        want: int,
        rate: float,
        capacity: float,
        at_least: int = 1,
        now: float | None = None,
    ) -> Take:
        """Up to ``want`` tokens of bucket ``name`` (none unless ``at_least`` are there)."""
        at = self.clock() if now is None else now
        with db.write_transaction(self._engine) as conn:
            taken = store.take(
                conn, name, want=want, rate=rate, capacity=capacity, now=at, at_least=at_least
            )
        self._maybe_prune(at)
        return taken

    def give(
        self, name: str, amount: float, *, rate: float, capacity: float, now: float | None = None
    ) -> None:
        """Put unused tokens back."""
        if amount <= 0:
            return
        at = self.clock() if now is None else now
        with db.write_transaction(self._engine) as conn:
            store.give(conn, name, amount, rate=rate, capacity=capacity, now=at)

    def _maybe_prune(self, now: float) -> None:
        """Full buckets are as good as absent: delete them (up to 10,000) every 10 s or so."""
        url = str(self._engine.url)
        with _prune_lock:
            if abs(now - _pruned.get(url, 0.0)) < PRUNE_EVERY:
                return
            _pruned[url] = now
        try:
            with db.write_transaction(self._engine) as conn:
                store.prune(conn, now)
        except Exception as exc:  # never fails a call
            log.debug("could not prune rate buckets: %s", exc)


@dataclass
class _Lease:
    tokens: int
    until: float  # spend before this (monotonic)
    empty_until: float = 0.0  # the shared bucket had no token before this


class SharedLimiter:
    """A token bucket per caller (``rate`` per second, ``burst`` at once), shared
    by every process through :class:`SharedBuckets`. ``rate`` <= 0 disables it."""

    def __init__(
        self,
        buckets: SharedBuckets,
        kind: str,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self.rate = rate
        self.burst = max(1, burst)
        self.lease = max(1, min(self.burst // 4, math.ceil(rate * LEASE_SECONDS)))
        self._buckets = buckets
        self._clock = clock
        self._leases: OrderedDict[str, _Lease] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._fallback = RateLimiter(rate, burst, clock=clock)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _spend(self, key: str, now: float) -> float | None:
        """None: spent a leased token; a wait: known empty; -1: ask the database."""
        lease = self._leases.get(key)
        if lease is None:
            return -1.0
        if lease.tokens > 0 and lease.until > now:
            lease.tokens -= 1
            return None
        if lease.empty_until > now:
            return lease.empty_until - now
        return -1.0

    async def acquire(self, key: str) -> float | None:
        """Take a token for ``key``: None if allowed, else seconds until one is free."""
        if not self.enabled:
            return None
        spent = self._spend(key, self._clock())
        if spent is None or spent >= 0:
            return spent
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                spent = self._spend(key, self._clock())  # another call may have refilled
                if spent is None or spent >= 0:
                    return spent
                return await self._refill(key)
        finally:
            if not lock.locked():
                self._locks.pop(key, None)

    async def _refill(self, key: str) -> float | None:
        try:
            taken = await asyncio.to_thread(
                self._buckets.take,
                f"{self.kind}:{key}",
                want=self.lease,
                rate=self.rate,
                capacity=float(self.burst),
            )
        except DatabaseUnavailable as exc:
            log.warning("shared rate limit unavailable (%s); limiting in this process", exc)
            return self._local(key)
        now = self._clock()
        lease = _Lease(max(0, taken.granted - 1), now + LEASE_LIFETIME)
        if not taken.granted:
            lease.empty_until = now + taken.wait
        self._leases[key] = lease
        self._leases.move_to_end(key)
        if len(self._leases) > _MAX_LOCAL:
            self._leases.popitem(last=False)
        return None if taken.granted else taken.wait

    def _local(self, key: str) -> float | None:
        """This process's own bucket, while the database is unavailable."""
        return self._fallback.acquire(key)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by caller, in this process only. ``rate`` <= 0
    disables the limiter. (The shared limits fall back to it.)"""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def peek(self, key_id: str) -> float | None:
        """Like :meth:`acquire` without taking a token: None if one is free, else
        seconds until one is."""
        if not self.enabled:
            return None
        bucket = self._buckets.get(key_id)
        if bucket is None:
            return None
        elapsed = max(0.0, self._clock() - bucket.updated)
        tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
        return None if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def acquire(self, key_id: str) -> float | None:
        """Take a token for ``key_id``: None if allowed, else seconds until one is free."""
        if not self.enabled:
            return None
        now = self._clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[key_id] = bucket
            if len(self._buckets) > _MAX_LOCAL:
                self._buckets.popitem(last=False)  # least recently used: it was full
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
            self._buckets.move_to_end(key_id)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate
