"""The target guard refuses non-public addresses on the connection itself."""

from __future__ import annotations

import asyncio

import pytest

from webhooks_service.config import Settings
from webhooks_service.delivery.http import Transport
from webhooks_service.delivery.retry_policy import ErrorKind
from webhooks_service.delivery.target_guard import BlockedTarget, TargetGuard

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "2002:7f00:1::1",  # 6to4 wrapping 127.0.0.1
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused_by_default(address: str) -> None:
    assert not TargetGuard().is_allowed(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert TargetGuard().is_allowed(address)


def test_allow_list_opens_networks_including_mapped_form() -> None:
    guard = TargetGuard(["127.0.0.0/8", "::1/128"])
    assert guard.is_allowed("127.0.0.1")
    assert guard.is_allowed("::ffff:127.0.0.1")
    assert guard.is_allowed("::1")
    assert not guard.is_allowed("10.0.0.1")


def test_filter_keeps_allowed_and_refuses_when_none_left() -> None:
    guard = TargetGuard()
    assert guard.filter("example", ["127.0.0.1", "8.8.8.8"]) == ["8.8.8.8"]
    with pytest.raises(BlockedTarget, match="not a public address"):
        guard.filter("example", ["127.0.0.1", "10.0.0.1"])


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/hook"]
)
def test_transport_refuses_loopback_without_allow_list(url: str) -> None:
    """Literal addresses and names that resolve to loopback are refused before connecting."""

    async def attempt() -> None:
        async with Transport(Settings()) as transport:
            result = await transport.post(url, b"{}", {})
        assert result.status_code == 0
        assert result.error_kind is ErrorKind.BLOCKED
        assert "blocked target" in result.error

    asyncio.run(attempt())
