"""The target guard where connections are made: no connection to a refused address.

The policy (which addresses deliveries may reach, this service's own
listeners) is ``webhooks_service/netpolicy.py``; this module applies it in the
two places the transport (``delivery/http.py``, libcurl) gives it:

- the resolver: :class:`GuardedResolver` answers a name with only the
  addresses the guard allows (``BlockedTarget`` when none is), and the
  transport hands curl exactly those (``CURLOPT_RESOLVE``), so a name that
  resolved to a public address when it was registered and resolves to
  127.0.0.1 at delivery time (DNS rebinding) is still refused, and the
  tenant's error names the host, never the addresses (the server log does).
  It is aiohttp's default resolver (``loop.getaddrinfo`` in a thread) under
  the guard;
- the socket factory: :func:`guarded_socket_factory` checks the address of
  every socket curl opens (``CURLOPT_OPENSOCKETFUNCTION``), before the
  socket exists, so before any byte is sent. IP literals are judged here, and
  so is every address the transport reuses from its own name cache
  (``DNS_TTL_SECONDS``): a listener of ours registered meanwhile is refused
  all the same.
"""

from __future__ import annotations

import socket

import aiohttp
from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult

from webhooks_service.netpolicy import BlockedTarget, SelfTarget, TargetGuard

__all__ = [
    "BlockedTarget",
    "GuardedResolver",
    "SelfTarget",
    "TargetGuard",
    "guarded_socket_factory",
]


class GuardedResolver(AbstractResolver):
    """aiohttp's default resolver, answering only the addresses ``guard`` allows."""

    def __init__(self, guard: TargetGuard, resolver: AbstractResolver | None = None) -> None:
        self._guard = guard
        self._resolver = resolver or aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        allowed = set(self._guard.filter(host, [r["host"] for r in results], port))
        return [r for r in results if r["host"] in allowed]

    async def close(self) -> None:
        await self._resolver.close()


def guarded_socket_factory(guard: TargetGuard) -> SocketFactoryType:
    """The connector's ``socket_factory``: a socket only for an allowed address."""

    def make_socket(addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, address = addr_info
        ip = str(address[0])
        guard.filter(ip, [ip], int(address[1]))  # BlockedTarget / SelfTarget
        return socket.socket(family=family, type=kind, proto=proto)

    return make_socket
