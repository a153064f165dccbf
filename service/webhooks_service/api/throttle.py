"""Limits at the edge, shared by every ``serve`` process (``core/limits.py``):

- **per-key call limits** (``rate_limit_per_second`` / ``rate_limit_burst`` for
  WebhookAdmin, ``publish_rate_limit_per_second`` for publishing): past them a
  call is RESOURCE_EXHAUSTED with RetryInfo and ``retry-after`` (HTTP 429 +
  ``Retry-After`` through the gateway);
- **failed authentications per client address** (``auth_failure_per_second``
  / ``auth_failure_burst``): every failure takes a token from the address's
  bucket; once it is empty, failures from that address are answered
  RESOURCE_EXHAUSTED instead of UNAUTHENTICATED. A *valid* credential is
  always checked and served, throttled address or not (issue 27, item 5):
  users behind one NAT are not locked out by someone else's bad key. A
  credential that already failed is answered from memory
  (``api/credentials.py``), so repeating a bad key costs no database lookup.

**The client address** is the gRPC peer's, unless the call comes from the
configured gateway (issue 27, item 6): the gateway (Envoy) adds
``x-webhooks-gateway-secret`` with the deployment's ``gateway_secret`` and
``x-webhooks-client-address`` with the downstream address, both overwriting
whatever the client sent. The address header is believed only when the peer
is one of ``trusted_proxies`` *and* the secret matches; any other caller —
a gRPC client on the same loopback included — is throttled by its own address.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import keys
from webhooks_service.core.limits import SharedBuckets, SharedLimiter
from webhooks_service.errors import DatabaseUnavailable, ResourceExhausted

__all__ = ["CLIENT_ADDRESS_HEADER", "GATEWAY_SECRET_HEADER", "Throttle"]

log = logging.getLogger(__name__)

CLIENT_ADDRESS_HEADER = "x-webhooks-client-address"
"""Set by the gateway to the downstream address; believed only from the gateway."""
GATEWAY_SECRET_HEADER = "x-webhooks-gateway-secret"
"""Set by the gateway to ``gateway_secret``: how a serve process knows the call came through it."""
_MAX_BLOCKED = 100_000


def _header(metadata: Any, name: str) -> str | None:
    for key, value in metadata or ():
        if key == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


class Throttle:
    """The shared per-key limits and the failed-authentication limit per address."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        buckets: SharedBuckets | None = None,
    ) -> None:
        self._clock = clock
        self._buckets = buckets or SharedBuckets(engine)
        self._secret = settings.gateway_secret.encode()
        self._trusted_proxies = tuple(
            ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies
        )
        self._admin, self._publish = (
            SharedLimiter(self._buckets, kind, rate, settings.rate_limit_burst, clock=clock)
            for kind, rate in (
                ("admin", settings.rate_limit_per_second),
                ("publish", settings.publish_rate_limit_per_second),
            )
        )
        self.failure_rate = settings.auth_failure_per_second
        self.failure_burst = max(1, settings.auth_failure_burst)
        # client address -> the shared bucket had no token before this (monotonic)
        self._blocked: OrderedDict[str, float] = OrderedDict()

    # -- who is calling ---------------------------------------------------------

    def from_gateway(self, peer_ip: str, metadata: Any) -> bool:
        """True when the call came through the configured gateway."""
        if not self._secret:
            return False
        try:
            ip = ipaddress.ip_address(peer_ip)
        except ValueError:
            return False
        if not any(ip.version == n.version and ip in n for n in self._trusted_proxies):
            return False
        presented = _header(metadata, GATEWAY_SECRET_HEADER)
        return presented is not None and hmac.compare_digest(presented.encode(), self._secret)

    def client_address(self, peer: str, metadata: Any) -> str:
        """The caller's IP: the peer's, or the gateway's header when it came through it."""
        kind, _, rest = peer.partition(":")
        host = rest.rsplit(":", 1)[0].strip("[]") if kind in ("ipv4", "ipv6") else peer
        if self.from_gateway(host, metadata):
            forwarded = (_header(metadata, CLIENT_ADDRESS_HEADER) or "").strip()[:64]
            if forwarded:
                return forwarded
        return host or "unknown"

    # -- per-key call limits ------------------------------------------------------

    async def limit(self, scope: str, key_id: str) -> None:
        """ResourceExhausted (with the wait) when the key's shared bucket is empty."""
        limiter = self._publish if scope == keys.SCOPE_EVENTS_PUBLISH else self._admin
        wait = await limiter.acquire(key_id)
        if wait is not None:
            raise ResourceExhausted(
                f"rate limit exceeded for this API key ({limiter.rate:g} calls per second, "
                f"bursts of {limiter.burst}); retry in {wait:.2f} s",
                retry_after=wait,
            )

    # -- failed authentications per address ---------------------------------------

    def blocked(self, client: str) -> float | None:
        """Seconds this address's failures are still refused (what this process knows)."""
        until = self._blocked.get(client)
        now = self._clock()
        return until - now if until is not None and until > now else None

    async def failed(self, client: str) -> float | None:
        """Count a failed authentication from ``client``: None while it is within
        its limit, else seconds until it may fail again."""
        if self.failure_rate <= 0:
            return None
        wait = self.blocked(client)
        if wait is not None:
            return wait
        try:
            taken = await asyncio.to_thread(
                self._buckets.take,
                f"auth:{client}",
                want=1,
                rate=self.failure_rate,
                capacity=float(self.failure_burst),
            )
        except DatabaseUnavailable:
            return None  # the credential was refused anyway
        if taken.granted:
            return None
        self._blocked[client] = self._clock() + taken.wait
        self._blocked.move_to_end(client)
        if len(self._blocked) > _MAX_BLOCKED:
            self._blocked.popitem(last=False)
        log.warning("failed authentications from %s are now rate limited", client)
        return taken.wait
