"""Per-API-key rate limits: a token bucket per key id, shared by every process.

The auth interceptor (``api/throttle.py``) takes a token once per
authenticated call. A key may spend ``burst`` calls at once and then ``rate`` calls per
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

The buckets are shared by every process of the deployment
(``core/limits.py``: the database is the counter, leased a tenth of a second
at a time); :class:`RateLimiter` is the in-process bucket they fall back to.
"""

from __future__ import annotations

import math

from webhooks_service.core.limits import RateLimiter

__all__ = ["RateLimiter", "retry_after_header"]


def retry_after_header(seconds: float) -> str:
    """HTTP ``Retry-After`` is whole seconds; round up so a retry then succeeds."""
    return str(max(1, math.ceil(seconds)))
