"""The delivery transport: one signed POST per call, as an ``AttemptResult``.

aiohttp directly (see docs/decisions.md, "Delivery transport": on this machine
it is ~3x faster than httpx over the httpx-aiohttp transport and ~12x faster
than httpx's own pool). One ``ClientSession`` per worker keeps connections
alive per endpoint; the connector's resolver and socket factory are the
target guard's (``target_guard.py``), so every connection goes to an allowed
address.

Per attempt: connect timeout (``connect_timeout``), a whole-attempt timeout
(``attempt_timeout`` or the config's override) covering connect, request and
reading the response; redirects are never followed (a 3xx is a retryable
outcome); the response body is read up to ``response_body_cap`` bytes, and if
more is coming the connection is dropped rather than drained. Every failure
becomes a result, never an exception: the caller logs each attempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from webhooks_service import __version__
from webhooks_service.config import Settings
from webhooks_service.delivery.retry_policy import AttemptResult, ErrorKind
from webhooks_service.delivery.target_guard import GuardedResolver, guarded_socket_factory
from webhooks_service.netpolicy import (
    BlockedTarget,
    TargetGuard,
    canonical_url,
    own_listeners_version,
)

URLS_KEPT = 4096
USER_AGENT = f"webhooks-service/{__version__}"
# What the log keeps of a response's headers (DeliveryLog.response_headers).
MAX_RESPONSE_HEADERS = 50
MAX_RESPONSE_HEADER_BYTES = 8192
# Sent on every request by the session (the log lists them with the others).
SESSION_HEADERS = (("user-agent", USER_AGENT), ("content-type", "application/json"))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def classify_error(exc: BaseException, timeout: float) -> tuple[ErrorKind, str]:
    """A transport exception as (kind, one-line message for the log)."""
    if isinstance(exc, BlockedTarget):  # an IP literal refused before connecting
        return ErrorKind.BLOCKED, str(exc)
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, BlockedTarget):
        return ErrorKind.BLOCKED, str(exc.os_error)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ErrorKind.TIMEOUT, f"connect timeout: {_describe(exc)}"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return ErrorKind.TIMEOUT, f"timeout: no complete response within {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ErrorKind.CONNECT, f"DNS: {_describe(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return ErrorKind.CONNECT, f"TLS: {_describe(exc)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or _describe(exc.os_error)
        return ErrorKind.CONNECT, f"connect failed: {reason} ({exc.host}:{exc.port})"
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return ErrorKind.INVALID_URL, f"invalid URL: {_describe(exc)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ErrorKind.CONNECT, "connection closed by the endpoint before a response"
    return ErrorKind.OTHER, _describe(exc)


def kept_headers(
    raw: tuple[tuple[bytes, bytes], ...],
) -> tuple[tuple[tuple[str, str], ...], bool]:
    """The response's headers in order, at most MAX_RESPONSE_HEADERS and
    MAX_RESPONSE_HEADER_BYTES of names and values; and whether some were left out."""
    kept: list[tuple[str, str]] = []
    used = 0
    for name, value in raw:
        used += len(name) + len(value)
        if len(kept) >= MAX_RESPONSE_HEADERS or used > MAX_RESPONSE_HEADER_BYTES:
            return tuple(kept), True
        # NUL cannot be stored in a PostgreSQL text column
        text = value.decode("latin-1").replace("\x00", "\ufffd")
        kept.append((name.decode("latin-1"), text))
    return tuple(kept), False


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of the body (no length, or more than the cap declared);
    if more is coming the connection is dropped instead of drained."""
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = await resp.content.read(cap + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    truncated = size > cap
    if truncated:
        resp.close()
    return b"".join(chunks)[:cap], truncated


@dataclass
class _Target:
    """A URL as the transport sends to it (``canonical_url``), and for an IP
    literal the own-listener version at which the guard last allowed it."""

    url: URL
    literal: str | None
    allowed_at: int | None = None


def _target(url: str) -> _Target:
    canonical = canonical_url(url)
    host = canonical.raw_host or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return _Target(canonical, None)
    return _Target(canonical, host)


class Transport:
    """Pooled keep-alive POSTs with the service's timeouts, caps and guard."""

    def __init__(self, settings: Settings, guard: TargetGuard | None = None) -> None:
        self.settings = settings
        self.guard = guard or TargetGuard(settings.allowed_target_networks)
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._urls: dict[str, _Target] = {}  # the URLs seen recently

    async def __aenter__(self) -> Transport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._resolver = GuardedResolver(self.guard)
        connector = aiohttp.TCPConnector(
            resolver=self._resolver,
            socket_factory=guarded_socket_factory(self.guard),
            limit=0,  # the worker enforces the global and per-endpoint limits
            ttl_dns_cache=30,
            keepalive_timeout=30,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=dict(SESSION_HEADERS),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:  # the connector closes only resolvers it made
            await self._resolver.close()
            self._resolver = None

    def _timeout(self, total: float) -> aiohttp.ClientTimeout:
        t = self._timeouts.get(total)
        if t is None:
            t = aiohttp.ClientTimeout(total=total, sock_connect=self.settings.connect_timeout)
            self._timeouts[total] = t
        return t

    def _url(self, url: str) -> URL:
        """``url`` canonical; an IP literal checked by the guard (BlockedTarget).

        aiohttp never hands a literal to the resolver, and the guard's socket
        factory runs only once the connection is being made; so a literal is
        judged here, before any connection, and again only when the own
        listeners change (the allow-list does not).
        """
        t = self._urls.get(url)
        if t is None:
            if len(self._urls) >= URLS_KEPT:
                self._urls.clear()
            t = self._urls[url] = _target(url)
        if t.literal is not None:
            version = own_listeners_version()
            if t.allowed_at != version:
                self.guard.filter(t.literal, [t.literal], t.url.port or 0)
                t.allowed_at = version
        return t.url

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        attempt_timeout: float | None = None,
    ) -> AttemptResult:
        """POST ``body`` to ``url``; whatever happens, an AttemptResult."""
        assert self._session is not None, "Transport.start() was not called"
        total = attempt_timeout or self.settings.attempt_timeout
        cap = self.settings.response_body_cap
        started = time.perf_counter()
        try:
            target = self._url(url)
            async with self._session.post(
                target,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout(total),
            ) as resp:
                length = resp.content_length
                if length is not None and length <= cap:
                    raw, truncated = await resp.read(), False  # a declared length within the cap
                else:
                    raw, truncated = await _read_capped(resp, cap)
                kept, kept_cut = kept_headers(resp.raw_headers)
                return AttemptResult(
                    status_code=resp.status,
                    # NUL cannot be stored in a PostgreSQL text column
                    response_body=raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
                    response_body_truncated=truncated,
                    duration_ms=int((time.perf_counter() - started) * 1000),
                    retry_after=resp.headers.get("retry-after"),
                    response_headers=kept,
                    response_headers_truncated=kept_cut,
                )
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            kind, message = classify_error(exc, total)
            return AttemptResult(
                error=message,
                error_kind=kind,
                duration_ms=int((time.perf_counter() - started) * 1000),
            )
