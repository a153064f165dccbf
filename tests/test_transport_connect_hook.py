"""libcurl's connect hook refuses on its own: the second line of the guard;
and a header with a line break never leaves the transport.

The guard's resolver answers only allowed addresses and curl is handed exactly
those; were that ever bypassed (here: a resolver that answers a refused
address unfiltered), the socket hook (``CURLOPT_OPENSOCKETFUNCTION``) still
refuses before a socket exists: the attempt is logged ``blocked`` and the
listener on that address sees no connection.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp.abc import ResolveResult

from tests.support.chaos import running_chaos
from webhooks_service.config import Settings
from webhooks_service.delivery import target_guard
from webhooks_service.delivery.http import Transport
from webhooks_service.delivery.retry_policy import ErrorKind


def test_the_socket_hook_refuses_an_address_the_resolver_let_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def unfiltered(
        self: target_guard.GuardedResolver,
        host: str,
        port: int = 0,
        family: socket.AddressFamily = socket.AF_INET,
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    monkeypatch.setattr(target_guard.GuardedResolver, "resolve", unfiltered)
    with running_chaos(lambda _e, _n: "ok") as rx:

        async def attempt() -> tuple[int, ErrorKind | None, str]:
            settings = Settings(allowed_target_networks=("127.0.0.2/32",))
            async with Transport(settings) as transport:
                result = await transport.post(f"http://hooks.test:{rx.port}/hook", b"{}", {})
            return result.status_code, result.error_kind, result.error

        status, kind, error = asyncio.run(attempt())
    assert (status, kind) == (0, ErrorKind.BLOCKED)
    assert "blocked target: 127.0.0.1 is not a public address" in error
    assert rx.connections == 0


def test_a_header_with_a_line_break_is_never_sent() -> None:
    """Configurations refuse such values at PUT; the transport refuses them too
    (curl would send the lines as they are)."""
    with running_chaos(lambda _e, _n: "ok") as rx:

        async def attempt() -> tuple[int, ErrorKind | None, str]:
            settings = Settings(allowed_target_networks=("127.0.0.0/8",))
            async with Transport(settings) as transport:
                result = await transport.post(rx.url(), b"{}", {"x-a": "1\r\nx-injected: 2"})
            return result.status_code, result.error_kind, result.error

        status, kind, error = asyncio.run(attempt())
    assert (status, kind) == (0, ErrorKind.INVALID_URL)
    assert error == "invalid header: a header contains a line break"
    assert rx.connections == 0
