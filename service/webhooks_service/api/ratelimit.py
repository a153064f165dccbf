"""Per-API-key rate limits: a token bucket per key id, in this process.

The auth interceptor asks :meth:`RateLimiter.acquire` once per authenticated
call. A key may spend ``burst`` calls at once and then ``rate`` calls per
second; a refused call is RESOURCE_EXHAUSTED with ``google.rpc.RetryInfo``
and a ``retry-after`` metadata entry (seconds, rounded up), which the Envoy
gateway forwards as the HTTP ``Retry-After`` header of its 429.

Settings (docs/decisions.md, "Admin API rate limits"):

- ``rate_limit_per_second`` / ``rate_limit_burst`` (default 50/s, burst 100)
  apply to the WebhookAdmin methods, per key; 0 disables.
- ``publish_rate_limit_per_second`` (default 0: not limited) applies to
  PublishEvent(s) with the same burst. Publishing is internal traffic whose
  volume the platform controls, and throttling it would only move the backlog
  into the publishers; operators who want a ceiling per key set one.

The buckets live in process memory: with N API processes behind the gateway
the effective limit per key is up to N times the setting. A shared limiter
(Redis or PostgreSQL) is later work.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter", "retry_after_header"]

_MAX_KEYS = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by API key id. ``rate`` <= 0 disables the limiter."""

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
            if len(self._buckets) > _MAX_KEYS:
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


def retry_after_header(seconds: float) -> str:
    """HTTP ``Retry-After`` is whole seconds; round up so a retry then succeeds."""
    return str(max(1, math.ceil(seconds)))
