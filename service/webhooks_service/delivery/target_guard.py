"""The target guard inside aiohttp's connector: no connection to a refused address.

The policy (which addresses deliveries may reach, this service's own
listeners) is ``webhooks_service/netpolicy.py``; this module applies it where
the connection is made. The check runs on the addresses the connection is
actually made to, not on the URL: ``GuardedConnector`` filters the result of
name resolution inside aiohttp's connector, right before it connects, so a
name that resolves to a public address at validation time and to 127.0.0.1 at
delivery time (DNS rebinding) is still refused. IP literals in URLs take the
same path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp.abc import ResolveResult

from webhooks_service.netpolicy import BlockedTarget, SelfTarget, TargetGuard

__all__ = ["BlockedTarget", "GuardedConnector", "SelfTarget", "TargetGuard"]


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
        allowed = set(self._guard.filter(host, [r["host"] for r in results], port))
        return [r for r in results if r["host"] in allowed]
