"""The delivery transport: one signed POST per call, as an ``AttemptResult``.

libcurl through pycurl (see docs/decisions.md, "CPU per delivery (issue 25):
the HTTP client": ~0.4x aiohttp's CPU per request here), driven by the event
loop through libcurl's multi-socket API (``curl_loop.CurlLoop``: curl's
sockets in one epoll set the loop watches, one loop timer for curl's timeout,
no thread; it replaced pycurl's ``AsyncCurlMulti``, see docs/decisions.md,
"CPU per delivery (issue 25): the transport's own work"). One multi handle per transport
keeps connections alive per destination (libcurl's connection pool); easy
handles are reused from a free list and keep their options: per request only
what changes is set.

The target guard (``target_guard.py``) decides where connections go: a name
is resolved by the guard's resolver, which answers only allowed addresses, and
curl is handed exactly those (``CURLOPT_RESOLVE``), so it never resolves on its
own; and every socket curl opens goes through the guard's socket factory
(``CURLOPT_OPENSOCKETFUNCTION``), which refuses a refused address before the
socket exists. The URL's host stays the Host header and the TLS SNI name.

Per attempt: connect timeout (``connect_timeout``, TCP and TLS), a
whole-attempt timeout (``attempt_timeout`` or the config's override) covering
resolving, connecting, the request and reading the response; redirects are
never followed (a 3xx is a retryable outcome); no proxy, whatever the
environment says; http and https only; TLS verified against the system's
trust store (``ssl.get_default_verify_paths``, so ``SSL_CERT_FILE`` applies);
HTTP/1.1. The response body is kept up to ``response_body_cap`` bytes: at the
first byte beyond it the transfer is stopped and the connection dropped
rather than drained. Every failure becomes a result, never an exception: the
caller logs each attempt; libcurl's error codes are mapped to the service's
``ErrorKind`` and message here (``curl_error``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

import pycurl

from webhooks_service import __version__
from webhooks_service.config import Settings
from webhooks_service.delivery.curl_loop import CurlLoop
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
# Sent on every request (the log lists them with the others).
SESSION_HEADERS = (("user-agent", USER_AGENT), ("content-type", "application/json"))
# Also sent, not logged: no "Expect: 100-continue" round trip for large bodies.
_FIXED_LINES = [f"{name}: {value}" for name, value in SESSION_HEADERS] + ["Expect:"]
DNS_TTL_SECONDS = 30.0  # how long a name's vetted addresses are reused
IDLE_SECONDS = 30  # a pooled connection unused this long is closed, not reused
_NO_RESOLVE: list[str] = []  # an IP literal's resolve entries (never changed)

_TLS_ERRORS = frozenset(
    {
        pycurl.E_SSL_CONNECT_ERROR,
        pycurl.E_PEER_FAILED_VERIFICATION,
        pycurl.E_SSL_CERTPROBLEM,
        pycurl.E_SSL_CIPHER,
        pycurl.E_SSL_CACERT_BADFILE,
        pycurl.E_SSL_ISSUER_ERROR,
        pycurl.E_SSL_PINNEDPUBKEYNOTMATCH,
        pycurl.E_SSL_INVALIDCERTSTATUS,
        pycurl.E_SSL_CRL_BADFILE,
        pycurl.E_SSL_SHUTDOWN_FAILED,
        pycurl.E_USE_SSL_FAILED,
    }
)
_WEIRD_SERVER_REPLY = pycurl.E_FTP_WEIRD_SERVER_REPLY  # code 8, CURLE_WEIRD_SERVER_REPLY since 7.51
_CLOSED_EARLY = frozenset({pycurl.E_GOT_NOTHING, pycurl.E_RECV_ERROR, pycurl.E_SEND_ERROR})


class _BadHeader(ValueError):
    """A header curl would send with a line break in it (never sent)."""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def classify_error(exc: BaseException, timeout: float) -> tuple[ErrorKind, str]:
    """An exception raised before curl ran (the URL, the guard, DNS) as
    (kind, one-line message for the log)."""
    if isinstance(exc, BlockedTarget):
        return ErrorKind.BLOCKED, str(exc)
    if isinstance(exc, TimeoutError):
        return ErrorKind.TIMEOUT, f"timeout: no complete response within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return ErrorKind.CONNECT, f"DNS: {_describe(exc)}"
    if isinstance(exc, _BadHeader):  # cannot be requested either
        return ErrorKind.INVALID_URL, f"invalid header: {exc}"
    if isinstance(exc, ValueError):
        return ErrorKind.INVALID_URL, f"invalid URL: {_describe(exc)}"
    return ErrorKind.OTHER, _describe(exc)


def curl_error(
    code: int, message: str, exchange: _Exchange, timeout: float
) -> tuple[ErrorKind, str]:
    """A libcurl error code as (kind, one-line message for the log)."""
    if exchange.refused is not None:  # the guard's socket factory refused every address
        return ErrorKind.BLOCKED, str(exchange.refused)
    if code == pycurl.E_OPERATION_TIMEDOUT:
        if exchange.curl.getinfo(pycurl.CONNECT_TIME) == 0:  # never connected
            within = min(exchange.connect_timeout, timeout)
            return ErrorKind.TIMEOUT, f"connect timeout: no connection within {within:g} s"
        return ErrorKind.TIMEOUT, f"timeout: no complete response within {timeout:g} s"
    if code == pycurl.E_COULDNT_CONNECT:
        os_errno = exchange.curl.getinfo(pycurl.OS_ERRNO)
        reason = os.strerror(os_errno) if os_errno else "could not connect"
        where = f"{exchange.target.host}:{exchange.target.port}" if exchange.target else "?"
        return ErrorKind.CONNECT, f"connect failed: {reason} ({where})"
    if code in _TLS_ERRORS:
        return ErrorKind.CONNECT, f"TLS: {message}"
    if code == pycurl.E_COULDNT_RESOLVE_HOST:
        return ErrorKind.CONNECT, f"DNS: {message}"
    if code in _CLOSED_EARLY:
        if exchange.status() == 0:
            return ErrorKind.CONNECT, "connection closed by the endpoint before a response"
        return ErrorKind.OTHER, f"connection lost while reading the response: {message}"
    if code == pycurl.E_URL_MALFORMAT:
        return ErrorKind.INVALID_URL, f"invalid URL: {message}"
    # the scheme is checked before curl runs: here "unsupported protocol" is a
    # reply that is not HTTP/1.x ("Received HTTP/0.9 when not allowed")
    if code in (_WEIRD_SERVER_REPLY, pycurl.E_UNSUPPORTED_PROTOCOL):
        return ErrorKind.OTHER, f"not an HTTP response: {message}"
    if code == pycurl.E_PARTIAL_FILE:
        return ErrorKind.OTHER, f"response ended early: {message}"
    return ErrorKind.OTHER, f"curl error {code}: {message}"


def response_headers(
    lines: list[bytes],
) -> tuple[tuple[tuple[str, str], ...], bool, str | None]:
    """The final response's headers (after any 1xx) from the header lines curl
    received: in order, at most MAX_RESPONSE_HEADERS and MAX_RESPONSE_HEADER_BYTES
    of names and values; whether some were left out; and its Retry-After."""
    start = 0
    for i in range(len(lines) - 1, -1, -1):  # no header name starts "HTTP/"
        if lines[i].startswith(b"HTTP/"):
            start = i + 1
            break
    kept: list[tuple[str, str]] = []
    used = 0
    left_out = False
    retry_after: str | None = None
    for line in lines[start:]:
        name, colon, value = line.partition(b":")
        if not colon:
            if line[:1] in (b" ", b"\t") and kept and not left_out:  # obsolete folding
                last, previous = kept[-1]
                kept[-1] = (last, f"{previous} {line.strip().decode('latin-1')}")
            continue  # and the blank line that ends the headers
        name, value = name.strip(), value.strip()
        text = value.decode("latin-1")
        if retry_after is None and name.lower() == b"retry-after":
            retry_after = text
        used += len(name) + len(value)
        if left_out or len(kept) >= MAX_RESPONSE_HEADERS or used > MAX_RESPONSE_HEADER_BYTES:
            left_out = True
            continue
        # NUL cannot be stored in a PostgreSQL text column
        kept.append((name.decode("latin-1"), text.replace("\x00", "\ufffd")))
    return tuple(kept), left_out, retry_after


def _trust_store() -> tuple[str | None, str | None]:
    """The CA file and directory Python's ssl (and so aiohttp before) trusts here;
    the wheel's libcurl would otherwise look where its build machine keeps them."""
    paths = ssl.get_default_verify_paths()
    return paths.cafile, paths.capath


class _HandOver:
    """A socket handed to curl from ``OPENSOCKETFUNCTION``: pycurl takes a dup of
    its descriptor and drops this at once, which closes ours, so curl's is the
    only one (a closed socket then leaves the transport's epoll set by itself)
    and no socket is left to the GC (a ResourceWarning)."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def __del__(self) -> None:
        self.sock.close()


class _Exchange:
    """One reusable easy handle and what its current transfer received: the
    header lines (``HEADERFUNCTION``) and the body up to the cap
    (``WRITEFUNCTION``: returning 0 at the first byte beyond it stops the
    transfer and drops the connection)."""

    def __init__(self, transport: Transport) -> None:
        self.curl = c = pycurl.Curl()
        self._make_socket = guarded_socket_factory(transport.guard)
        self.cap = transport.settings.response_body_cap
        self.connect_timeout = transport.settings.connect_timeout
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False
        self.lines: list[bytes] = []  # the header lines as received (all responses)
        self.refused: BlockedTarget | None = None
        self.target: _Target | None = None  # for the error messages
        # what the handle holds from its last request (set again only when it differs)
        self.url = ""
        self.timeout_ms = 0
        self.resolve: list[str] = _NO_RESOLVE
        c.setopt(pycurl.NOSIGNAL, 1)
        c.setopt(pycurl.PROXY, "")  # never a proxy from the environment
        c.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        c.setopt(pycurl.FOLLOWLOCATION, 0)
        c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        c.setopt(pycurl.CONNECTTIMEOUT_MS, int(self.connect_timeout * 1000))
        c.setopt(pycurl.MAXAGE_CONN, IDLE_SECONDS)
        cafile, capath = transport.trust
        if cafile:
            c.setopt(pycurl.CAINFO, cafile)
        if capath:
            c.setopt(pycurl.CAPATH, capath)
        c.setopt(pycurl.OPENSOCKETFUNCTION, self._open_socket)
        c.setopt(pycurl.HEADERFUNCTION, self.lines.append)
        c.setopt(pycurl.WRITEFUNCTION, self._write)

    def prepare(
        self, url: str, body: bytes, lines: list[str], timeout_ms: int, resolve: list[str]
    ) -> None:
        self.chunks = []
        self.size = 0
        self.truncated = False
        self.lines.clear()
        self.refused = None
        c = self.curl
        if url != self.url:
            c.setopt(pycurl.URL, url)
            self.url = url
        c.setopt(pycurl.POSTFIELDS, body)
        c.setopt(pycurl.HTTPHEADER, lines)
        if timeout_ms != self.timeout_ms:
            c.setopt(pycurl.TIMEOUT_MS, timeout_ms)
            self.timeout_ms = timeout_ms
        # curl loads a handle's resolve entries into the multi's DNS cache at the
        # first transfer after they are set, so a name's are set on every request
        # (curl never resolves on its own); an IP literal has none to load
        if resolve or self.resolve:
            c.setopt(pycurl.RESOLVE, resolve)
            self.resolve = resolve

    def _open_socket(
        self, _purpose: int, address: tuple[int, int, int, tuple[object, ...]]
    ) -> _HandOver | int:
        family, kind, proto, sockaddr = address
        try:
            sock = self._make_socket((family, kind, proto, "", sockaddr))
        except BlockedTarget as exc:  # before any socket, so before any byte
            self.refused = exc
            return pycurl.SOCKET_BAD
        return _HandOver(sock)

    def _write(self, data: bytes) -> int | None:
        room = self.cap - self.size
        if len(data) > room:
            if room > 0:
                self.chunks.append(data[:room])
                self.size = self.cap
            self.truncated = True
            return 0  # stop: the rest is not read
        self.chunks.append(data)
        self.size += len(data)
        return None

    def status(self) -> int:
        """The final response's status (0: none)."""
        return int(self.curl.getinfo(pycurl.RESPONSE_CODE))


@dataclass
class _Target:
    """A URL as the transport sends to it (``canonical_url``); for a name, the
    host and port curl's resolve entries are for; for an IP literal the
    own-listener version at which the guard last allowed it."""

    url: str
    host: str
    port: int
    literal: bool
    allowed_at: int | None = None


def _target(url: str) -> _Target:
    canonical = canonical_url(url)
    host = canonical.raw_host or ""
    if canonical.scheme not in ("http", "https") or not host:
        raise ValueError(f"{url!r} is not an http(s) URL with a host")
    port = canonical.port or 0
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return _Target(str(canonical), host, port, False)
    return _Target(str(canonical), host, port, True)


def _resolve_entry(host: str, port: int, addresses: list[str]) -> str:
    shown = ",".join(f"[{a}]" if ":" in a else a for a in addresses)
    return f"{host}:{port}:{shown}"


class Transport:
    """Pooled keep-alive POSTs with the service's timeouts, caps and guard."""

    def __init__(self, settings: Settings, guard: TargetGuard | None = None) -> None:
        self.settings = settings
        self.guard = guard or TargetGuard(settings.allowed_target_networks)
        self.trust = _trust_store()
        self._curl: CurlLoop | None = None
        self._resolver: GuardedResolver | None = None
        self._free: list[_Exchange] = []
        self._urls: dict[str, _Target] = {}  # the URLs seen recently
        # (host, port) -> (curl's resolve entry, expiry, own-listener version)
        self._names: dict[tuple[str, int], tuple[list[str], float, int]] = {}

    async def __aenter__(self) -> Transport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._resolver = GuardedResolver(self.guard)
        self._curl = CurlLoop()

    async def close(self) -> None:
        if self._curl is not None:
            self._curl.close()
            self._curl = None
        for exchange in self._free:
            exchange.curl.close()
        self._free.clear()
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None

    def _target(self, url: str) -> _Target:
        """``url`` canonical; an IP literal checked by the guard (BlockedTarget)
        here, before any connection, and again only when the own listeners
        change (the allow-list does not); the socket factory checks it again."""
        t = self._urls.get(url)
        if t is None:
            if len(self._urls) >= URLS_KEPT:
                self._urls.clear()
            t = self._urls[url] = _target(url)
        if t.literal:
            version = own_listeners_version()
            if t.allowed_at != version:
                self.guard.filter(t.host, [t.host.strip("[]")], t.port)
                t.allowed_at = version
        return t

    def _resolved(self, t: _Target) -> list[str] | None:
        """curl's resolve entry for a name, if its vetted addresses are still
        reused (DNS_TTL_SECONDS, the own listeners the same); else None."""
        cached = self._names.get((t.host, t.port))
        if (
            cached is not None
            and cached[1] > time.monotonic()
            and cached[2] == own_listeners_version()
        ):
            return cached[0]
        return None

    async def _resolve(self, t: _Target) -> list[str]:
        """curl's resolve entry for a name: the guard's allowed addresses for it,
        reused for DNS_TTL_SECONDS while the own listeners stay the same."""
        cached = self._resolved(t)
        if cached is not None:
            return cached
        version = own_listeners_version()
        assert self._resolver is not None
        results = await self._resolver.resolve(t.host, t.port, socket.AF_UNSPEC)
        entry = [_resolve_entry(t.host, t.port, list(dict.fromkeys(r["host"] for r in results)))]
        if len(self._names) >= URLS_KEPT:
            self._names.clear()
        self._names[(t.host, t.port)] = (entry, time.monotonic() + DNS_TTL_SECONDS, version)
        return entry

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        attempt_timeout: float | None = None,
    ) -> AttemptResult:
        """POST ``body`` to ``url``; whatever happens, an AttemptResult."""
        driver = self._curl
        assert driver is not None, "Transport.start() was not called"
        total = attempt_timeout or self.settings.attempt_timeout
        started = time.perf_counter()
        exchange = self._free.pop() if self._free else _Exchange(self)
        try:
            target = self._target(url)
            exchange.target = target
            lines = _FIXED_LINES + [f"{name}: {value}" for name, value in headers.items()]
            joined = "".join(lines)
            if "\n" in joined or "\r" in joined:  # curl would send it as it is
                raise _BadHeader("a header contains a line break")
            resolve = _NO_RESOLVE if target.literal else self._resolved(target)
            if resolve is None:  # a name to resolve (again)
                async with asyncio.timeout(total):
                    resolve = await self._resolve(target)
            left_ms = max(1, int((total - (time.perf_counter() - started)) * 1000))
            exchange.prepare(target.url, body, lines, left_ms, resolve)
        except (OSError, TimeoutError, ValueError) as exc:
            self._free.append(exchange)
            kind, text = classify_error(exc, total)
            return AttemptResult(
                error=text,
                error_kind=kind,
                duration_ms=int((time.perf_counter() - started) * 1000),
            )
        curl = exchange.curl
        try:
            transfer = driver.start(curl)
        except pycurl.error as exc:  # the multi handle refused it
            failure: tuple[int, str] | None = exc.args if len(exc.args) == 2 else (0, str(exc))
        else:
            try:
                failure = await transfer
            except BaseException:  # cancelled mid-transfer: the handle is dropped, not reused
                driver.cancel(curl)
                raise
        self._free.append(exchange)
        if failure is not None and not exchange.truncated:  # not the stop at the cap
            kind, text = curl_error(failure[0], failure[1], exchange, total)
            return AttemptResult(
                error=text,
                error_kind=kind,
                duration_ms=int((time.perf_counter() - started) * 1000),
            )
        kept, kept_cut, retry_after = response_headers(exchange.lines)
        raw = b"".join(exchange.chunks)
        return AttemptResult(
            status_code=exchange.status(),
            # NUL cannot be stored in a PostgreSQL text column
            response_body=raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
            response_body_truncated=exchange.truncated,
            duration_ms=int((time.perf_counter() - started) * 1000),
            retry_after=retry_after,
            response_headers=kept,
            response_headers_truncated=kept_cut,
        )


__all__ = [
    "MAX_RESPONSE_HEADERS",
    "MAX_RESPONSE_HEADER_BYTES",
    "SESSION_HEADERS",
    "USER_AGENT",
    "Transport",
    "classify_error",
    "curl_error",
    "response_headers",
]
