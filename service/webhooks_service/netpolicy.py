"""What deliveries may connect to: the address policy of the service.

By default deliveries reach only globally routable addresses: every block of
the IANA IPv4 and IPv6 Special-Purpose Address Registries
(:data:`REFUSED_NETWORKS`: loopback, private, shared/CGN, link-local,
documentation, benchmarking, 6to4 relays, protocol assignments, …) is refused,
and so are multicast, IPv6 outside global unicast ``2000::/3`` (so deprecated
site-local ``fec0::/10`` too), and the same addresses written as IPv4-mapped
IPv6 (``::ffff:127.0.0.1``) or through the NAT64 prefix ``64:ff9b::/96``.
Operators open networks with ``WEBHOOKS_ALLOWED_TARGET_NETWORKS``
(development, tests and the demo allow ``127.0.0.0/8,::1/128``).

Whatever the allow-list says, the service never connects to its own
listeners (gRPC, REST gateway, metrics, Envoy admin): every process registers
the addresses it listens on (:func:`register_own_listener`) and the guard
refuses a connection to any of them (:class:`SelfTarget`). A tenant's
endpoint pointing at ``/quitquitquit`` of the gateway's admin, or at the API
itself, is logged and refused.

The tenant's error never names the addresses a host resolved to (that would
map the operator's internal network for them); the server log does.

Base floor (no I/O beyond reading this host's own addresses, no aiohttp):
``core/configs.py`` refuses a URL naming a refused literal address when it is
registered (:func:`literal_target_problem`); ``delivery/target_guard.py``
applies :meth:`TargetGuard.filter` to the addresses each connection is
actually made to, so DNS rebinding cannot get round it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from yarl import URL

from webhooks_service.errors import ConfigurationError
from webhooks_service.hostport import parse_address

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

log = logging.getLogger(__name__)

# IANA IPv4 and IPv6 Special-Purpose Address Registries (2025 editions), every
# block, whatever its "globally reachable" column says: none is a place a
# webhook endpoint lives, and several (AS112, AMT, 6to4 relays) lead to
# infrastructure. Plus multicast and the IPv4 limited broadcast.
REFUSED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        # IPv4 (RFC 6890 and updates)
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (CGN)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link local
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments (incl. 192.0.0.9/.10 anycast)
        "192.0.2.0/24",  # TEST-NET-1
        "192.31.196.0/24",  # AS112-v4
        "192.52.193.0/24",  # AMT
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # private
        "192.175.48.0/24",  # direct delegation AS112
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved
        "255.255.255.255/32",  # limited broadcast
        # IPv6 (RFC 6890 and updates)
        "::/128",  # unspecified
        "::1/128",  # loopback
        "::ffff:0:0/96",  # IPv4-mapped (judged by the IPv4 address inside, first)
        "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation
        "100::/64",  # discard-only
        "100:0:0:1::/64",  # dummy IPv6 prefix
        "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, AS112, …)
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4 (deprecated, RFC 7526)
        "2620:4f:8000::/48",  # direct delegation AS112
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link local
        "fec0::/10",  # deprecated site local
        "ff00::/8",  # multicast
    )
)
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known prefix: the IPv4 address inside


class BlockedTarget(OSError):
    """Every address of the target is in a refused network.

    An ``OSError``, like the connection errors it stands for (the guard's
    resolver and socket factory raise it where a connection would be made).
    """


class SelfTarget(BlockedTarget):
    """The target is one of this service's own listeners (never allowed)."""


_own_lock = threading.Lock()
# (port, listener host or None for "any address") -> how many registrations
_own: Counter[tuple[int, IPAddress | None]] = Counter()
_own_version = 0  # changes whenever a listener is registered or forgotten


def own_listeners_version() -> int:
    """A number that changes whenever the own listeners change: a decision on an
    address taken at one version holds until the version moves."""
    return _own_version


def _local_addresses() -> set[IPAddress]:
    found: set[IPAddress] = set()
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        return found
    for info in infos:
        try:
            found.add(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
        except ValueError:
            continue
    return found


def _listener_key(host: str, port: int) -> tuple[int, IPAddress | None] | None:
    if not 0 < port <= 65535:
        return None
    try:
        ip: IPAddress | None = _unwrap(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        ip = None  # a host name: treated as listening on every address
    if ip is not None and ip.is_unspecified:
        ip = None
    return (port, ip)


def register_own_listener(host: str, port: int) -> Callable[[], None]:
    """Record that this process (or its gateway) listens on ``host:port``, so
    that no delivery connects there; returns the function that forgets it
    again (when the listener closes). Port 0 registers nothing."""
    key = _listener_key(host, port)
    if key is None:
        return lambda: None
    global _own_version
    with _own_lock:
        _own[key] += 1
        _own_version += 1
    done = False

    def unregister() -> None:
        nonlocal done
        global _own_version
        with _own_lock:
            if not done:
                done = True
                _own_version += 1
                _own[key] -= 1
                if _own[key] <= 0:
                    del _own[key]

    return unregister


def register_own_listen_address(listen: str) -> Callable[[], None]:
    """:func:`register_own_listener` for a ``HOST:PORT`` setting (empty or not
    an address: nothing)."""
    try:
        address = parse_address(listen, what="listen address", allow_zero_port=True)
    except ConfigurationError:
        return lambda: None
    return register_own_listener(address.host, address.port)


def _unwrap(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
    return ip


def is_own_listener(ip: IPAddress, port: int) -> bool:
    """True when ``ip:port`` would reach one of the registered own listeners."""
    with _own_lock:
        hosts = {host for p, host in _own if p == port}
    if not hosts:
        return False
    ip = _unwrap(ip)
    if ip.is_loopback or ip.is_unspecified:
        return True  # loopback reaches every local listener on that port
    if None in hosts:  # a wildcard listener: any address of this machine
        return ip in hosts or ip in _local_addresses()
    return ip in hosts


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
        if ip in _NAT64:
            return is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        inner = _embedded_ipv4(ip)
        if inner is not None and not is_public(inner):
            return False
        if ip not in _GLOBAL_UNICAST_V6:
            return False
    if any(ip.version == net.version and ip in net for net in REFUSED_NETWORKS):
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

    def filter(self, host: str, addresses: Sequence[str], port: int = 0) -> list[str]:
        """The allowed subset of ``addresses``; BlockedTarget when none is.

        An address that is one of this service's own listeners (on ``port``)
        is never allowed, whatever the allow-list. The exception's message is
        the tenant's (it lands in their delivery log) and names no address;
        the addresses go to the server log.
        """
        own = [a for a in addresses if port and is_own_listener(ipaddress.ip_address(a), port)]
        allowed = [a for a in addresses if a not in own and self.is_allowed(a)]
        if allowed:
            return allowed
        shown = ", ".join(addresses) or "no address"
        if own:
            log.warning(
                "refused a delivery to this service's own listener: %s port %d resolves to %s",
                host,
                port,
                shown,
            )
            raise SelfTarget(
                f"blocked target: {host}:{port} is one of this webhook service's own "
                "listeners; deliveries never go there"
            )
        log.warning("refused a delivery to a non-public address: %s resolves to %s", host, shown)
        raise BlockedTarget(
            f"blocked target: {host} is not a public address "
            "(allow it with WEBHOOKS_ALLOWED_TARGET_NETWORKS)"
        )


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
    still caught at delivery time (``delivery/target_guard.py``).
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
