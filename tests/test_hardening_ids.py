"""Nothing leaks, nothing forged, nothing reachable (issue #13, items 2, 6 and 8).

- page tokens: forged, altered and foreign tokens are INVALID_ARGUMENT, never
  INTERNAL, and nothing is logged with a traceback; tokens carry no readable
  position;
- delivery and attempt ids are opaque: one organisation's ids say nothing
  about another's volume;
- the target guard refuses the IANA special-purpose ranges, does not tell the
  tenant where a name resolves, and never delivers to the service itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterator

import grpc
import pytest

from tests.support.envoy import running_gateway
from tests.support.seed import seed_attempts
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks.v1 import admin_pb2, admin_pb2_grpc
from webhooks_client import AdminClient, InvalidArgumentError
from webhooks_service.delivery.target_guard import TargetGuard
from webhooks_service.observability.metrics import Metrics, start_metrics_server

# -- page tokens --------------------------------------------------------------


def _old_style(position: object, *parts: object) -> str:
    """A token as the old scheme built them: base64 JSON + a recomputable hash."""
    text = json.dumps([str(p) for p in parts], separators=(",", ":"))
    bound = hashlib.sha256(text.encode()).hexdigest()[:16]
    raw = json.dumps({"k": position, "b": bound}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture
def seeded(database_url: str) -> Iterator[tuple[RunningServer, str, AdminClient]]:
    with running_server(database_url) as srv:
        org_id, keys = make_org_and_keys(srv.engine)
        with AdminClient(srv.target, keys["all"]) as admin:
            configs = [
                admin.put_webhook_config(
                    url=f"https://example.com/{i}", event_types=["*"]
                ).config.id
                for i in range(3)
            ]
            seed_attempts(srv.engine, org_id, configs[:1], 5)
            yield srv, org_id, admin


def test_forged_page_tokens_of_each_kind_are_invalid_argument(
    seeded: tuple[RunningServer, str, AdminClient], caplog: pytest.LogCaptureFixture
) -> None:
    _, org_id, admin = seeded
    caplog.set_level(logging.DEBUG)
    logs_forged = [
        _old_style(2**63, "logs", org_id, "", "", "", ""),  # was INTERNAL (OverflowError)
        _old_style(2**64 + 5, "logs", org_id, "", "", "", ""),
        _old_style(-1, "logs", org_id, "", "", "", ""),
    ]
    configs_forged = [
        _old_style(["2026-01-01T00:00:00", "whc_x"], "configs", org_id),  # naive: was INTERNAL
        _old_style(["9999-12-31T23:00:00-14:00", "whc_x"], "configs", org_id),  # overflow
        _old_style(["0001-01-01T00:00:00+14:00", "whc_x"], "configs", org_id),
    ]
    real = admin.list_delivery_logs(page_size=1).next_page_token
    raw = bytearray(base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)))
    raw[-1] ^= 1
    altered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    for token in [*logs_forged, altered, "", "x" * 40]:
        if not token:
            continue
        with pytest.raises(InvalidArgumentError) as err:
            admin.list_delivery_logs(page_token=token)
        assert [v.field for v in err.value.field_violations] == ["page_token"]
    stub = admin_pb2_grpc.WebhookAdminStub(admin._channel)
    for token in configs_forged:
        with pytest.raises(grpc.RpcError) as rpc_err:
            stub.ListWebhookConfigs(
                admin_pb2.ListWebhookConfigsRequest(page_token=token),
                metadata=admin._metadata,
                timeout=10,
            )
        assert rpc_err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in (rpc_err.value.details() or "")
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]


def test_page_tokens_carry_no_readable_position(
    seeded: tuple[RunningServer, str, AdminClient],
) -> None:
    srv, _, admin = seeded
    page = admin.list_delivery_logs(page_size=2)
    raw = base64.urlsafe_b64decode(page.next_page_token + "==")
    with pytest.raises(ValueError):  # ciphertext, not the JSON position
        json.loads(raw)
    # a token from another organisation is refused
    _, keys = make_org_and_keys(srv.engine, "Other")
    with AdminClient(srv.target, keys["all"]) as other, pytest.raises(InvalidArgumentError):
        other.list_delivery_logs(page_token=page.next_page_token)


# -- opaque ids ---------------------------------------------------------------


def test_delivery_ids_of_one_organisation_do_not_reveal_anothers_volume(
    database_url: str,
) -> None:
    with running_server(database_url) as srv:
        acme, acme_keys = make_org_and_keys(srv.engine, "Acme")
        globex, globex_keys = make_org_and_keys(srv.engine, "Globex")
        with (
            AdminClient(srv.target, acme_keys["all"]) as a,
            AdminClient(srv.target, globex_keys["all"]) as g,
        ):
            a_cfg = a.put_webhook_config(url="https://example.com/a", event_types=["*"]).config.id
            g_cfg = g.put_webhook_config(url="https://example.com/g", event_types=["*"]).config.id
            # Acme, then 40 of Globex's deliveries in between, then Acme again.
            seed_attempts(srv.engine, acme, [a_cfg], 1)
            seed_attempts(srv.engine, globex, [g_cfg], 40)
            seed_attempts(srv.engine, acme, [a_cfg], 1)
            logs = list(a.iter_delivery_logs())
    assert len(logs) == 2
    numbers: list[int] = []
    for entry in logs:
        for public in (entry.delivery_id, entry.id):
            prefix, _, body = public.partition("_")
            assert prefix in ("dlv", "att") and len(body) == 16, public
            numbers.append(int(body, 16))
    # consecutive rows are far apart: the distance says nothing about the 40 between
    newer, older = int(logs[0].delivery_id[4:], 16), int(logs[1].delivery_id[4:], 16)
    assert abs(newer - older) > 2**32
    assert len(set(numbers)) == 4


# -- the target guard -----------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "fec0::1",  # deprecated site-local
        "192.0.0.9",  # IETF protocol assignments (PCP anycast)
        "192.0.0.170",
        "192.88.99.1",  # 6to4 relay anycast
        "3fff::1",  # documentation (2024)
        "5f00::1",  # SRv6 SIDs
        "100:0:0:1::1",  # dummy prefix
        "64:ff9b:1::1",  # local-use translation
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2001:db8::1",
        "2002:808:808::1",  # 6to4 (deprecated)
        "2620:4f:8000::1",  # AS112
        "192.31.196.1",
        "198.18.0.1",
        "4000::1",  # outside global unicast 2000::/3
    ],
)
def test_iana_special_purpose_addresses_are_refused(address: str) -> None:
    assert not TargetGuard().is_allowed(address)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2a00:1450:4001::1", "9.9.9.9"])
def test_public_addresses_still_pass(address: str) -> None:
    assert TargetGuard().is_allowed(address)


def test_blocked_target_error_does_not_name_the_resolved_address(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with running_server(database_url, {"allowed_target_networks": ()}) as srv:
        _, keys = make_org_and_keys(srv.engine)
        with AdminClient(srv.target, keys["all"]) as admin:
            config = admin.put_webhook_config(url="https://example.com/h", event_types=["*"])
            # The name now resolves to loopback (as after a DNS change; PUT refuses
            # literal loopback names, so the row is changed underneath).
            with srv.engine.begin() as conn:
                conn.exec_driver_sql(
                    "UPDATE webhook_configs SET url = 'http://localhost:9/h' WHERE id = '"
                    + config.config.id
                    + "'"
                )
            entry = admin.send_test_event(config.config.id)
    assert "blocked target: localhost is not a public address" in entry.error
    assert "127.0.0.1" not in entry.error and "::1" not in entry.error
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "localhost resolves to" in logged and "127.0.0.1" in logged  # operators see it


@pytest.mark.gateway
def test_the_service_never_delivers_to_itself_whatever_the_allow_list(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    open_list = {"allowed_target_networks": ("0.0.0.0/0", "::/0")}
    metrics = start_metrics_server("127.0.0.1:0", Metrics())
    try:
        with running_server(database_url, open_list) as srv, running_gateway([srv.target]) as gw:
            assert gw.listen is not None
            assert gw.admin is None and gw.admin_socket is not None  # admin: no TCP port at all
            _, keys = make_org_and_keys(srv.engine)
            targets = {
                "gRPC": f"http://127.0.0.1:{srv.port}/webhooks.v1.WebhookAdmin/x",
                "gRPC by name": f"http://localhost:{srv.port}/",
                "REST": f"http://127.0.0.1:{gw.listen.port}/webhooks/configs",
                "metrics": f"http://127.0.0.1:{metrics.port}/metrics",
                "REST via 0.0.0.0": f"http://0.0.0.0:{gw.listen.port}/",
            }
            with AdminClient(srv.target, keys["all"]) as admin:
                for name, url in targets.items():
                    config = admin.put_webhook_config(url=url, event_types=["*"]).config
                    entry = admin.send_test_event(config.id)
                    assert entry.response_status_code == 0, (name, entry)
                    assert "own listeners" in entry.error, (name, entry.error)
    finally:
        metrics.close()
    refusals = [r for r in caplog.records if "own listener" in r.getMessage()]
    assert len(refusals) >= len(targets)
