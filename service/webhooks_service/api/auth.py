"""The auth interceptor: who is calling, may they call this method.

One ``grpc.aio`` server interceptor wraps every ``webhooks.v1`` method. It

1. reads ``authorization: Bearer <key>`` from the call metadata and checks the
   key (missing, malformed, unknown or revoked: UNAUTHENTICATED);
2. checks the scope the method needs, from the one table
   :data:`METHOD_SCOPES` (missing: PERMISSION_DENIED). A ``webhooks.v1``
   method missing from the table is refused, so a new RPC cannot ship
   unprotected by accident;
3. takes a token from the key's rate-limit bucket (``api/ratelimit.py``;
   empty: RESOURCE_EXHAUSTED with RetryInfo and ``retry-after``);
4. exposes the caller to the servicer as :func:`current_principal` (a
   contextvar, set for the duration of the call);
5. turns whatever the servicer raises into a gRPC status through
   ``api/errors.py`` — servicers never build statuses themselves.

Health checking and server reflection need no key (load balancers and
``grpcurl`` call them anonymously).

Portal sessions (``wpt_…`` tokens, ``core/portal.py``) are accepted wherever
a key is: see the "portal sessions" block below; everything else treats them
as a principal like any other, of one organisation, with their scopes.

Key lookups hit the database in a worker thread; verified keys are cached for
half a second (:data:`KEY_CACHE_SECONDS`, never past the key's expiry) so that
a busy publisher does not pay a query per call, while a revoked or expired
key is refused by every process within a second (``core/keys.py``). The
cache is keyed by the SHA-256 of the whole key, so it never holds a usable
secret.

The edge (issue #13, :meth:`AuthInterceptor._gate` and its helpers):

- the key is checked *before the request message is read*: every protected
  method is served as a stream-unary handler whose first step is
  authentication, so an anonymous caller's message (up to the server's
  16 MiB limit) is never received into memory; it is refused with its
  first bytes still in flow control;
- after authentication, each method has its own message size limit
  (:data:`METHOD_MAX_BYTES`: 1 MiB for WebhookAdmin, the server's 16 MiB
  for publishing) — RESOURCE_EXHAUSTED beyond it;
- failed authentications are rate limited per client address
  (``auth_failure_per_second`` / ``auth_failure_burst``): after the burst,
  calls from that address are RESOURCE_EXHAUSTED with RetryInfo and
  ``retry-after`` (HTTP 429 + ``Retry-After`` through the gateway) without a
  database lookup, except for keys that authenticated in the last ten
  minutes (:data:`KNOWN_GOOD_SECONDS`), so a flood of bad keys does not lock
  out a working client behind the same address. The client address is the
  gRPC peer, or — when the peer is one of ``trusted_proxies`` (the gateway;
  loopback by default) — the ``x-webhooks-client-address`` header that
  the gateway sets (overwriting anything the client sent).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import grpc
from google.protobuf.message import Message
from sqlalchemy.engine import Engine

from webhooks_service.api.errors import abort_with_error
from webhooks_service.api.ratelimit import RateLimiter
from webhooks_service.api.requests import Undecodable, lenient, nul_violations, undecodable_error
from webhooks_service.config import Settings
from webhooks_service.core import keys, portal
from webhooks_service.errors import (
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from webhooks_service.storage.models import utcnow

__all__ = [
    "METHOD_SCOPES",
    "PUBLIC_SERVICES",
    "AuthInterceptor",
    "Principal",
    "current_principal",
    "require_organisation",
    "use_principal",
]

METHOD_SCOPES: dict[str, str] = {
    "/webhooks.v1.WebhookAdmin/ListWebhookConfigs": keys.SCOPE_WEBHOOKS_READ,
    "/webhooks.v1.WebhookAdmin/ListDeliveryLogs": keys.SCOPE_WEBHOOKS_READ,
    "/webhooks.v1.WebhookAdmin/ListEventTypes": keys.SCOPE_WEBHOOKS_READ,
    "/webhooks.v1.WebhookAdmin/GetEvent": keys.SCOPE_WEBHOOKS_READ,
    "/webhooks.v1.WebhookAdmin/GetEndpointStats": keys.SCOPE_WEBHOOKS_READ,
    "/webhooks.v1.WebhookAdmin/PutWebhookConfig": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/DeleteWebhookConfig": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/RetryDelivery": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/ReplayDeliveries": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/SendTestEvent": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/RotateWebhookSecret": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/CreatePortalSession": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/RevokePortalSession": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.EventPublisher/PublishEvent": keys.SCOPE_EVENTS_PUBLISH,
    "/webhooks.v1.EventPublisher/PublishEvents": keys.SCOPE_EVENTS_PUBLISH,
}
"""Every protected method and the scope it needs (one scope per method)."""

PUBLIC_SERVICES: tuple[str, ...] = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
"""Method prefixes callable without a key."""

KEY_CACHE_SECONDS = 0.5
_KEY_CACHE_MAX = 10_000

KNOWN_GOOD_SECONDS = 600.0
"""A key that authenticated this long ago still passes a client address's
failed-authentication limit (it is looked up and verified as usual)."""

CLIENT_ADDRESS_HEADER = "x-webhooks-client-address"
"""Set by the gateway (Envoy) to the downstream address; trusted from trusted_proxies only."""

ADMIN_MAX_BYTES = 1024 * 1024
PUBLISH_MAX_BYTES = 16 * 1024 * 1024  # the server's grpc.max_receive_message_length
METHOD_MAX_BYTES: dict[str, int] = {
    method: PUBLISH_MAX_BYTES if scope == keys.SCOPE_EVENTS_PUBLISH else ADMIN_MAX_BYTES
    for method, scope in METHOD_SCOPES.items()
}
"""Largest request message per method, enforced once the caller is authenticated."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: an API key of one organisation, or a platform
    key (``organisation_id`` None) that may publish for every organisation."""

    key_id: str
    organisation_id: str | None
    scopes: frozenset[str]
    # A portal session (dashboard token) rather than an API key: key_id is the
    # session id (wps_…), and it stops at expires_at.
    is_portal: bool = False
    expires_at: datetime | None = None

    @property
    def is_platform(self) -> bool:
        return self.organisation_id is None

    def as_caller(self) -> portal.Caller:
        return portal.Caller(self.key_id, self.organisation_id, self.scopes, self.is_portal)


_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "webhooks_principal", default=None
)
# The principal the gate authenticated before the message was read (this call only).
_gated: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "webhooks_gated_principal", default=None
)
log = logging.getLogger(__name__)


def current_principal() -> Principal:
    """The caller of the current RPC; Unauthenticated outside an authenticated call."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("no authenticated caller")
    return principal


def require_organisation() -> str:
    """The caller's organisation id; PermissionDenied for a platform key."""
    principal = current_principal()
    if principal.organisation_id is None:
        raise PermissionDenied("a platform key cannot administer an organisation's webhooks")
    return principal.organisation_id


def use_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    """Set the current principal (for tests and in-process callers); returns the reset token."""
    return _principal.set(principal)


def _bearer(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization metadata must be 'Bearer <api key>'")
            return token.strip()
    raise Unauthenticated("missing API key: send 'authorization: Bearer <api key>'")


Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates, authorises and maps errors for every webhooks.v1 call."""

    def __init__(
        self,
        engine: Engine,
        *,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._wall_clock = wall_clock
        self._cache: dict[str, tuple[float, Principal]] = {}
        settings = settings or Settings()
        self._auth_failures = RateLimiter(
            settings.auth_failure_per_second, settings.auth_failure_burst, clock=clock
        )
        # keys that authenticated lately pass the failure limit (digest -> until)
        self._known_good: OrderedDict[str, float] = OrderedDict()
        self._trusted_proxies = tuple(
            ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies
        )
        self._admin_limiter = RateLimiter(
            settings.rate_limit_per_second, settings.rate_limit_burst, clock=clock
        )
        self._publish_limiter = RateLimiter(
            settings.publish_rate_limit_per_second, settings.rate_limit_burst, clock=clock
        )

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(PUBLIC_SERVICES):
            return handler
        if handler.unary_unary is None:
            # No streaming RPC is part of the contract; refuse rather than
            # serve one unauthenticated.
            return grpc.unary_unary_rpc_method_handler(self._refuse(method))
        behavior = cast(Behavior, handler.unary_unary)  # async under grpc.aio
        # Served stream-unary (wire-identical for unary clients) so that the key
        # is checked before the message is read (see _gate).
        return grpc.stream_unary_rpc_method_handler(
            self._gated_call(method, self._wrap(method, behavior)),
            # Undecodable bytes become INVALID_ARGUMENT after auth (api/requests.py).
            request_deserializer=_size_limited(
                lenient(handler.request_deserializer, method.rsplit("/", 1)[-1] + " request"),
                METHOD_MAX_BYTES.get(method, ADMIN_MAX_BYTES),
            ),
            response_serializer=handler.response_serializer,
        )

    def _refuse(self, method: str) -> Behavior:
        async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await abort_with_error(context, PermissionDenied(f"{method} is not available"))

        return refuse

    def _wrap(self, method: str, behavior: Behavior) -> Behavior:
        scope = METHOD_SCOPES.get(method)

        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                principal = _gated.get() or await self._authenticate(context.invocation_metadata())
                if scope is None:
                    raise PermissionDenied(f"{method} is not open to API keys")
                if scope not in principal.scopes:
                    raise PermissionDenied(f"this API key lacks the scope {scope!r}")
                self._limit(scope, principal)
                if isinstance(request, TooLarge):
                    raise request.error(method)
                if isinstance(request, Undecodable):
                    raise undecodable_error(request)
                if isinstance(request, Message) and (problems := nul_violations(request)):
                    raise InvalidArgument(f"invalid request: check {problems[0].field}", problems)
                token = _principal.set(principal)
                try:
                    return await behavior(request, context)
                finally:
                    _principal.reset(token)
            except grpc.aio.AbortError:
                raise  # the servicer aborted the call itself
            except Exception as exc:
                await abort_with_error(context, exc)

        return wrapped

    def _limit(self, scope: str, principal: Principal) -> None:
        """ResourceExhausted (with the wait) when the key's bucket is empty."""
        publishing = scope == keys.SCOPE_EVENTS_PUBLISH
        limiter = self._publish_limiter if publishing else self._admin_limiter
        wait = limiter.acquire(principal.key_id)
        if wait is not None:
            raise ResourceExhausted(
                f"rate limit exceeded for this API key ({limiter.rate:g} calls per second, "
                f"bursts of {limiter.burst}); retry in {wait:.2f} s",
                retry_after=wait,
            )

    # -- the edge: authenticate before reading, failed keys limited per address --

    def _gated_call(self, method: str, wrapped: Behavior) -> Any:
        """A stream-unary behavior: authenticate (:meth:`_gate`), then read the
        one request message and run ``wrapped`` on it."""

        async def call(request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                principal = await self._gate(context)
            except Exception as exc:
                await abort_with_error(context, exc)
                return None
            request: Any = None
            async for message in request_iterator:
                request = message
                break
            if request is None:
                await abort_with_error(context, InvalidArgument(f"{method}: no request message"))
            token = _gated.set(principal)
            try:
                return await wrapped(request, context)
            finally:
                _gated.reset(token)

        return call

    def client_address(self, peer: str, metadata: Any) -> str:
        """The caller's IP: the peer's, or the gateway's header from a trusted proxy."""
        kind, _, rest = peer.partition(":")
        host = rest.rsplit(":", 1)[0].strip("[]") if kind in ("ipv4", "ipv6") else peer
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host or "unknown"
        if any(ip.version == net.version and ip in net for net in self._trusted_proxies):
            for key, value in metadata or ():
                if key == CLIENT_ADDRESS_HEADER:
                    text = value.decode() if isinstance(value, bytes) else str(value)
                    return text.strip()[:64] or host
        return host

    @staticmethod
    def _digest(metadata: Any) -> str | None:
        try:
            return hashlib.sha256(_bearer(metadata).encode()).hexdigest()
        except Unauthenticated:
            return None

    def _recently_verified(self, metadata: Any) -> bool:
        """True for a key that authenticated in the last :data:`KNOWN_GOOD_SECONDS`."""
        digest = self._digest(metadata)
        until = self._known_good.get(digest) if digest else None
        return until is not None and until > self._clock()

    def _remember_good(self, metadata: Any) -> None:
        digest = self._digest(metadata)
        if digest is None:
            return
        self._known_good[digest] = self._clock() + KNOWN_GOOD_SECONDS
        self._known_good.move_to_end(digest)
        if len(self._known_good) > _KEY_CACHE_MAX:
            self._known_good.popitem(last=False)

    async def _gate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        """The caller's principal, checked before the message is read; failed
        authentications are counted per client address, and past the burst that
        address gets RESOURCE_EXHAUSTED (no database lookup) until it cools down."""
        metadata = context.invocation_metadata()
        client = self.client_address(context.peer() or "", metadata)
        wait = self._auth_failures.peek(client)
        if wait is not None and not self._recently_verified(metadata):
            raise ResourceExhausted(
                f"too many failed authentications from {client}; retry in {wait:.2f} s",
                retry_after=wait,
            )
        try:
            principal = await self._authenticate(metadata)
        except Unauthenticated:
            if self._auth_failures.acquire(client) is not None:
                log.warning("failed authentications from %s are now rate limited", client)
            raise
        if self._auth_failures.enabled:
            self._remember_good(metadata)
        return principal

    async def _authenticate(self, metadata: Any) -> Principal:
        raw = _bearer(metadata)
        digest = hashlib.sha256(raw.encode()).hexdigest()
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now and self._live(hit[1]):
            return hit[1]
        if portal.is_portal_token(raw):
            principal = await self._authenticate_portal(raw)
            ttl = KEY_CACHE_SECONDS  # its expiry is checked on every hit (_live)
        else:
            row = await asyncio.to_thread(keys.authenticate, self._engine, raw)
            principal = Principal(row.id, row.organisation_id, row.scopes)
            ttl = keys.cache_seconds(row, KEY_CACHE_SECONDS)
        if len(self._cache) >= _KEY_CACHE_MAX:
            self._cache.clear()
        self._cache[digest] = (now + ttl, principal)
        return principal

    # -- portal sessions (dashboard tokens, core/portal.py) --------------------

    def _live(self, principal: Principal) -> bool:
        """A cached portal session is only reused before it expires."""
        return principal.expires_at is None or principal.expires_at > self._wall_clock()

    async def _authenticate_portal(self, raw: str) -> Principal:
        row = await asyncio.to_thread(portal.authenticate, self._engine, raw, self._wall_clock())
        return Principal(
            row.id, row.organisation_id, row.scopes, is_portal=True, expires_at=row.expires_at
        )


@dataclass(frozen=True)
class TooLarge:
    """A request message over its method's limit (never parsed)."""

    size: int
    limit: int

    def error(self, method: str) -> ResourceExhausted:
        return ResourceExhausted(
            f"{method.rsplit('/', 1)[-1]} request of {self.size} bytes is over the "
            f"limit of {self.limit} bytes"
        )


def _size_limited(
    deserializer: Callable[[bytes], Any] | None, limit: int
) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        if len(data) > limit:
            return TooLarge(len(data), limit)
        return deserializer(data)

    return parse
