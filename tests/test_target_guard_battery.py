"""Target guard battery, end to end: a URL naming a literal non-public address
is refused at PUT (a field violation on ``url``); and a webhook configuration
pointing at a non-public address is refused *at delivery* by the real worker — logged with a
clear error, ``OUTCOME_FAILED``, never retried, never connected — and works
once the operator lists the network in ``allowed_target_networks``.

Addresses: ``127.1``, ``0x7f000001``, ``2130706433``, ``[::1]``,
``[::ffff:127.0.0.1]``, ``0.0.0.0``, ``localhost``, a name resolving to
127.0.0.1 and one resolving to 169.254.169.254 (an injected resolver),
``169.254.169.254`` and ``10.0.0.1``; plus an allowed endpoint redirecting to
a refused one (redirects are not followed).

Safety: a tripwire under the guard (around the socket factory the transport
hands libcurl as ``CURLOPT_OPENSOCKETFUNCTION``: it sees every socket the guard
let curl open) refuses, and records, any connection to a non-loopback address, so no case
ever sends traffic off this machine — and a guard that let one through fails
the test on the tripwire instead. Loopback cases have a listener on the very
address and port: its connection count must stay 0.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from typing import Any

import aiohttp.resolver
import pytest

from tests.support.chaos import ChaosReceiver, running_chaos
from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.server import make_org_and_keys, running_server
from webhooks_client import AdminClient, DeliveryOutcome, InvalidArgumentError, PublisherClient
from webhooks_service.core import configs
from webhooks_service.delivery import http, target_guard
from webhooks_service.domain import utcnow
from webhooks_service.storage.queue_stats import queue_stats

Out = DeliveryOutcome
FAST = (0.05, 0.05)

# (case, host as written in the URL, network the operator lists, loopback?)
CASES = [
    ("short-dotted", "127.1", "127.0.0.0/8", True),
    ("hex", "0x7f000001", "127.0.0.0/8", True),
    ("decimal", "2130706433", "127.0.0.0/8", True),
    ("ipv6-loopback", "[::1]", "::1/128", True),
    ("ipv4-mapped", "[::ffff:127.0.0.1]", "127.0.0.0/8", True),
    ("unspecified", "0.0.0.0", "0.0.0.0/32", True),
    ("localhost", "localhost", "127.0.0.0/8,::1/128", True),
    ("name-to-loopback", "hooks.customer.test", "127.0.0.0/8", True),
    ("name-to-metadata", "metadata.customer.test", None, False),
    ("metadata", "169.254.169.254", None, False),
    ("private", "10.0.0.1", None, False),
]
FAKE_DNS = {"hooks.customer.test": "127.0.0.1", "metadata.customer.test": "169.254.169.254"}


class Tripwire:
    """Connections the transport tried to open to non-loopback addresses."""

    def __init__(self) -> None:
        self.hits: list[str] = []


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> Tripwire:
    wire = Tripwire()
    real_factory = target_guard.guarded_socket_factory
    real_resolve = aiohttp.resolver.ThreadedResolver.resolve

    def tripwire_factory(guard: Any) -> Any:
        make_socket = real_factory(guard)

        def checked(addr_info: Any) -> socket.socket:
            sock = make_socket(addr_info)  # the guard refuses here first
            host = str(addr_info[4][0])
            if not _loopback(host):
                sock.close()
                wire.hits.append(host)
                raise OSError(f"tripwire: refused to connect to {host}")
            return sock

        return checked

    async def fake_resolve(
        self: Any, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> Any:
        if host in FAKE_DNS:
            return [
                {
                    "hostname": host,
                    "host": FAKE_DNS[host],
                    "port": port,
                    "family": socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            ]
        return await real_resolve(self, host, port, family)

    monkeypatch.setattr(http, "guarded_socket_factory", tripwire_factory)
    monkeypatch.setattr(aiohttp.resolver.ThreadedResolver, "resolve", fake_resolve)
    return wire


def _loopback(host: str) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(host.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


@pytest.fixture
def listener() -> Iterator[ChaosReceiver]:
    """Where loopback cases point: counts every TCP connection, answers 200."""
    with running_chaos(lambda _e, _n: "ok", also_ipv6=True) as rx:
        yield rx


LITERAL_CASES = [c for c in CASES if not c[1].endswith(".test") and c[0] != "localhost"]


@pytest.mark.parametrize(
    ("case", "host"), [(c[0], c[1]) for c in LITERAL_CASES], ids=[c[0] for c in LITERAL_CASES]
)
def test_literal_non_public_address_refused_at_put(database_url: str, case: str, host: str) -> None:
    with running_server(database_url, {"allowed_target_networks": ("192.0.2.0/24",)}) as srv:
        _, keys = make_org_and_keys(srv.engine)
        with AdminClient(srv.target, keys["all"]) as admin:
            with pytest.raises(InvalidArgumentError) as caught:
                admin.put_webhook_config(url=f"http://{host}:8080/hook", event_types=["*"])
            assert [v.field for v in caught.value.field_violations] == ["url"]
            (violation,) = caught.value.field_violations
            assert "address, which deliveries may not reach" in violation.description
            assert "WEBHOOKS_ALLOWED_TARGET_NETWORKS" in violation.description
            # Names are judged at delivery, on the address actually connected to.
            admin.put_webhook_config(url="http://hooks.customer.test/hook", event_types=["*"])


def deliver_once(database_url: str, url: str, allowed: tuple[str, ...]) -> list[Any]:
    """Configure ``url``, publish one event; the delivery log once it settles.

    The configuration is stored through the use case with every network
    allowed (a PUT would refuse literal addresses up front), so that what is
    judged here is the worker's own guard, e.g. after the operator narrowed
    the allowed networks."""
    overrides = {"allowed_target_networks": allowed, "retry_schedule": FAST}
    with running_server(database_url, overrides, worker=True) as srv:
        org_id, keys = make_org_and_keys(srv.engine)
        with (
            AdminClient(srv.target, keys["all"]) as admin,
            PublisherClient(srv.target, keys["events:publish"]) as pub,
        ):
            anywhere = ("0.0.0.0/0", "::/0")
            configs.put_config(
                srv.engine,
                dataclasses.replace(srv.settings, allowed_target_networks=anywhere),
                org_id,
                config_id="",
                url=url,
                event_types=["*"],
                secret=None,
                enabled=None,
                description=None,
            )
            pub.publish_event(org_id, "reward.claimed", example("reward.claimed"), id="guarded")

            def final() -> bool:
                logs = list(admin.iter_delivery_logs())
                return bool(logs) and logs[0].outcome != Out.RETRY_SCHEDULED

            eventually(final, 15, "a final outcome")
            # Nothing more may happen: nothing is pending in the queue (no retry is
            # scheduled) and the worker holds nothing.
            eventually(lambda: queue_stats(srv.engine, utcnow()).pending == 0, 15, "an empty queue")
            srv.quiet()
            return list(reversed(list(admin.iter_delivery_logs())))


@pytest.mark.parametrize(("case", "host", "network", "loopback"), CASES, ids=[c[0] for c in CASES])
def test_refused_at_delivery_logged_and_not_retried(
    database_url: str,
    tripwire: Tripwire,
    listener: ChaosReceiver,
    case: str,
    host: str,
    network: str | None,
    loopback: bool,
) -> None:
    url = f"http://{host}:{listener.port}/hook"
    # Listing some other network does not open this one.
    (entry,) = deliver_once(database_url, url, ("192.0.2.0/24",))
    assert entry.outcome == Out.FAILED, entry
    assert entry.response_status_code == 0
    assert "blocked target" in entry.error and "not a public address" in entry.error, entry.error
    assert "WEBHOOKS_ALLOWED_TARGET_NETWORKS" in entry.error
    assert listener.connections == 0 and tripwire.hits == []


@pytest.mark.parametrize(
    ("case", "host", "network"),
    [(c, h, n) for c, h, n, loopback in CASES if loopback],
    ids=[c[0] for c in CASES if c[3]],
)
def test_allowed_once_the_operator_lists_the_network(
    database_url: str,
    tripwire: Tripwire,
    listener: ChaosReceiver,
    case: str,
    host: str,
    network: str,
) -> None:
    url = f"http://{host}:{listener.port}/hook"
    (entry,) = deliver_once(database_url, url, tuple(network.split(",")))
    assert (entry.outcome, entry.response_status_code) == (Out.DELIVERED, 200), entry
    assert listener.connections == 1 and [h.event_id for h in listener.hits] == ["guarded"]
    assert tripwire.hits == []


def test_private_networks_open_only_when_listed_without_sending_traffic() -> None:
    """The non-loopback cases' "allowed" half, judged without a connection."""
    from webhooks_service.delivery.target_guard import TargetGuard

    for address, network in [("10.0.0.1", "10.0.0.0/8"), ("169.254.169.254", "169.254.0.0/16")]:
        assert not TargetGuard().is_allowed(address)
        assert not TargetGuard(["192.0.2.0/24"]).is_allowed(address)
        assert TargetGuard([network]).is_allowed(address)


def test_redirect_to_a_refused_address_is_not_followed(
    database_url: str, tripwire: Tripwire
) -> None:
    """Only 127.0.0.2 is allowed; it answers 302 to 127.0.0.1 (refused). The
    attempt is logged as the 302 (retried, then dead: 3xx is retryable), and
    127.0.0.1 never sees a connection."""
    with running_chaos(lambda _e, _n: "ok") as private:
        location = private.url("/internal")
        with running_chaos(lambda _e, _n: "redirect", host="127.0.0.2", location=location) as rx:
            logs = deliver_once(database_url, rx.url(), ("127.0.0.2/32",))
    assert [(e.outcome, e.response_status_code) for e in logs] == [
        (Out.RETRY_SCHEDULED, 302),
        (Out.RETRY_SCHEDULED, 302),
        (Out.DEAD, 302),
    ]
    assert len(rx.hits) == 3
    assert private.connections == 0 and tripwire.hits == []
