"""The guard's two aiohttp hooks (delivery/target_guard.py), against a real receiver.

The resolver judges names; the socket factory judges every socket the
connector opens. These check what only the factory can see: an address taken
from aiohttp's DNS cache after one of the service's own listeners was
registered on it, and an IP literal whose port becomes an own listener while
the transport runs.
"""

from __future__ import annotations

import asyncio
import socket

from tests.support.receiver import Reply, running_receiver
from webhooks_service.config import Settings
from webhooks_service.delivery.http import Transport
from webhooks_service.delivery.retry_policy import ErrorKind
from webhooks_service.delivery.target_guard import guarded_socket_factory
from webhooks_service.netpolicy import SelfTarget, TargetGuard, register_own_listener

LOOPBACK = ("127.0.0.0/8", "::1/128")


def test_a_name_cached_before_an_own_listener_registered_is_refused_after() -> None:
    with running_receiver() as rx:
        rx.program("/hook", Reply(headers={"connection": "close"}))  # nothing kept alive
        url = f"http://localhost:{rx.port}/hook"
        port = rx.port

        async def attempts() -> tuple[int, int, ErrorKind | None, str]:
            settings = Settings(allowed_target_networks=LOOPBACK)
            async with Transport(settings) as transport:
                first = await transport.post(url, b"{}", {})  # localhost now in the DNS cache
                forget = register_own_listener("127.0.0.1", port)
                forget_v6 = register_own_listener("::1", port)
                try:
                    second = await transport.post(url, b"{}", {})
                finally:
                    forget()
                    forget_v6()
            return first.status_code, second.status_code, second.error_kind, second.error

        first, second, kind, error = asyncio.run(attempts())
    assert first == 200
    assert (second, kind) == (0, ErrorKind.BLOCKED)
    assert "own listeners" in error
    assert rx.count("/hook") == 1


def test_a_literal_refused_once_its_port_becomes_an_own_listener() -> None:
    with running_receiver() as rx:
        url, port = rx.url("/hook"), rx.port

        async def attempts() -> list[int]:
            settings = Settings(allowed_target_networks=LOOPBACK)
            async with Transport(settings) as transport:
                codes = [(await transport.post(url, b"{}", {})).status_code]
                forget = register_own_listener("127.0.0.1", port)
                try:
                    codes.append((await transport.post(url, b"{}", {})).status_code)
                finally:
                    forget()
                codes.append((await transport.post(url, b"{}", {})).status_code)
            return codes

        assert asyncio.run(attempts()) == [200, 0, 200]
    assert rx.count("/hook") == 2


def test_the_socket_factory_refuses_before_a_socket_exists() -> None:
    guard = TargetGuard(LOOPBACK)
    make = guarded_socket_factory(guard)
    info = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 9))
    sock = make(info)
    sock.close()
    forget = register_own_listener("127.0.0.1", 9)
    try:
        try:
            make(info)
        except SelfTarget as exc:
            assert "own listeners" in str(exc)
        else:
            raise AssertionError("the factory made a socket to an own listener")
    finally:
        forget()
    refused = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 80))
    try:
        guarded_socket_factory(TargetGuard())(refused)
    except OSError as exc:
        assert "not a public address" in str(exc)
    else:
        raise AssertionError("the factory made a socket to a private address")
