"""Which network addresses deliveries may connect to.

By default the worker refuses every address that is not globally routable:
loopback, private (RFC 1918, ULA), link-local, multicast, unspecified,
shared/carrier-grade NAT, documentation and reserved ranges, including those
same addresses written as IPv4-mapped IPv6 (``::ffff:127.0.0.1``), 6to4 or
Teredo. Operators open networks with ``WEBHOOKS_ALLOWED_TARGET_NETWORKS``
(development, tests and the demo allow ``127.0.0.0/8,::1/128``).

The check runs on the addresses the connection is actually made to, not on
the URL: ``GuardedConnector`` filters the result of name resolution inside
aiohttp's connector, right before it connects, so a name that resolves to a
public address at validation time and to 127.0.0.1 at delivery time (DNS
rebinding) is still refused. IP literals in URLs take the same path.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import ResolveResult
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedTarget(OSError):
    """Every address of the target is in a refused network.

    An ``OSError`` so that aiohttp's connector passes it through its usual
    connection-error path (``ClientConnectorError.os_error``).
    """


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_public(ip: IPAddress) -> bool:
    """True for globally routable unicast addresses (and embedded IPv4 ones)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public(ip.ipv4_mapped)
        inner = _embedded_ipv4(ip)
        if inner is not None and not is_public(inner):
            return False
    return (
        ip.is_global
        and not ip.is_multicast
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_unspecified
        and not ip.is_reserved
        and not ip.is_private
    )


# Legacy numeric IPv4 hosts as inet_aton reads them: 127.1, 0x7f000001, 2130706433, 0177.0.0.1.
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.I)


def canonical_url(url: str) -> URL:
    """``url`` with a legacy numeric IPv4 host rewritten to its dotted quad
    (``127.1`` -> ``127.0.0.1``), the way resolvers (inet_aton) and browsers
    (WHATWG URL) read it.

    aiohttp refuses some of these spellings as invalid and resolves others, so
    the same target would be "invalid URL" or "blocked" depending on how it is
    written, and an operator's allow-list could not open it. Canonical, the
    guard judges (and the allow-list opens) the address that is meant.
    """
    parsed = URL(url)
    host = parsed.raw_host
    if host and _NUMERIC_HOST.fullmatch(host):
        try:
            dotted = socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return parsed
        if dotted != host:
            return parsed.with_host(dotted)
    return parsed


class TargetGuard:
    """Decides per IP address; ``allowed`` networks override the refusal."""

    def __init__(self, allowed_networks: Iterable[str] = ()) -> None:
        self.allowed: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allowed_networks
        )

    def _in_allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allowed)

    def is_allowed(self, address: str | IPAddress) -> bool:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        if self._in_allowed(ip):
            return True
        if isinstance(ip, ipaddress.IPv6Address):
            inner = _embedded_ipv4(ip)
            if inner is not None and self._in_allowed(inner):
                return True
        return is_public(ip)

    def filter(self, host: str, addresses: Sequence[str]) -> list[str]:
        """The allowed subset of ``addresses``; BlockedTarget when none is."""
        allowed = [a for a in addresses if self.is_allowed(a)]
        if not allowed:
            shown = ", ".join(addresses) or "no address"
            raise BlockedTarget(
                f"blocked target: {host} resolves to {shown}, which is not a public "
                "address (allow it with WEBHOOKS_ALLOWED_TARGET_NETWORKS)"
            )
        return allowed


class GuardedConnector(aiohttp.TCPConnector):
    """An aiohttp connector that connects only to addresses the guard allows.

    It filters the output of the connector's own resolution step (which also
    serves IP literals and the DNS cache), so every TCP connection the
    session opens goes to an address that passed the guard.
    """

    def __init__(self, guard: TargetGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guard = guard

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Any] | None = None
    ) -> list[ResolveResult]:
        results = await super()._resolve_host(host, port, traces=traces)
        allowed = set(self._guard.filter(host, [r["host"] for r in results]))
        return [r for r in results if r["host"] in allowed]


def _describe(ip: IPAddress) -> str:
    for test, what in (
        ("is_loopback", "a loopback"),
        ("is_link_local", "a link-local"),
        ("is_multicast", "a multicast"),
        ("is_unspecified", "the unspecified"),
        ("is_private", "a private"),
    ):
        if getattr(ip, test):
            return what
    return "a non-public"


def literal_target_problem(guard: TargetGuard, url: str) -> str | None:
    """Why the URL's host is a literal address (or ``localhost``) the guard
    refuses, for a field violation at configuration time; None otherwise.

    Only what the URL itself says: a name that resolves to a refused address is
    still caught by :class:`GuardedConnector` at delivery time.
    """
    try:
        host = canonical_url(url).raw_host or ""
    except (ValueError, TypeError):
        return None
    host = host.strip("[]").rstrip(".").lower()
    allow_hint = (
        "use a public address, or ask the operator to allow its network "
        "(WEBHOOKS_ALLOWED_TARGET_NETWORKS)"
    )
    if host == "localhost" or host.endswith(".localhost"):
        if guard.is_allowed("127.0.0.1") and guard.is_allowed("::1"):
            return None
        return f"{host} is a loopback name, which deliveries may not reach; {allow_hint}"
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if guard.is_allowed(ip):
        return None
    return f"{ip} is {_describe(ip)} address, which deliveries may not reach; {allow_hint}"
