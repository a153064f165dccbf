"""The portal's API (issue 20): log filters (time range, status class, event-type
wildcards), attempt headers, test events of any subscribed type, the event view,
per-endpoint stats and deleted endpoints named by their URL.

Each test runs on SQLite and PostgreSQL against the real server with its
delivery worker, a real HTTP receiver and the real Envoy gateway: the gRPC
calls go to the server, the REST calls through Envoy's transcoder.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import grpc
import httpx
import pytest
import sqlalchemy as sa
from google.protobuf import struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2

from tests.support.envoy import running_gateway
from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Receiver, Reply, running_receiver
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks.v1 import admin_pb2, admin_pb2_grpc
from webhooks_client import PublisherClient
from webhooks_service.gateway import EnvoyProcess
from webhooks_service.storage import db
from webhooks_service.storage.models import Delivery, DeliveryAttempt, Event

pytestmark = pytest.mark.gateway

EVENTS = cast(sa.Table, Event.__table__)
DELIVERIES = cast(sa.Table, Delivery.__table__)
ATTEMPTS = cast(sa.Table, DeliveryAttempt.__table__)


@dataclass
class Stack:
    srv: RunningServer
    gw: EnvoyProcess
    rx: Receiver
    org_id: str
    keys: dict[str, str]
    other_keys: dict[str, str]
    channel: grpc.Channel
    admin: admin_pb2_grpc.WebhookAdminStub

    def meta(self, key: str | None = None) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {key or self.keys['all']}")]

    def call(self, method: str, request: Any, key: str | None = None) -> Any:
        return getattr(self.admin, method)(request, metadata=self.meta(key), timeout=30)

    def rest(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key or self.keys['all']}"}
        return httpx.request(
            method, f"{self.gw.base_url}{path}", headers=headers, timeout=30, **kwargs
        )

    def config(self, path: str, types: Sequence[str] = ("*",), **fields: Any) -> str:
        response = self.call(
            "PutWebhookConfig",
            admin_pb2.PutWebhookConfigRequest(
                url=self.rx.url(path), event_types=list(types), **fields
            ),
        )
        return str(response.config.id)


@pytest.fixture
def stack(database_url: str) -> Iterator[Stack]:
    overrides = {"retry_schedule": (0.2, 0.2), "test_events_per_minute": 6000.0}
    with (
        running_receiver() as rx,
        running_server(database_url, overrides, worker=True) as srv,
        running_gateway([srv.target]) as gw,
        grpc.insecure_channel(srv.target) as channel,
    ):
        org_id, keys = make_org_and_keys(srv.engine, "Acme")
        _, other_keys = make_org_and_keys(srv.engine, "Globex")
        stub = admin_pb2_grpc.WebhookAdminStub(channel)
        yield Stack(srv, gw, rx, org_id, keys, other_keys, channel, stub)


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def violations(err: grpc.RpcError) -> dict[str, str]:
    """field -> description of the BadRequest detail of an INVALID_ARGUMENT."""
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, err
    trailers = {m.key: m.value for m in err.trailing_metadata() or ()}
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    out: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.update({v.field: v.description for v in bad.field_violations})
    return out


def rest_violations(resp: httpx.Response) -> dict[str, str]:
    assert resp.status_code == 400, resp.text
    out: dict[str, str] = {}
    for detail in resp.json().get("details", []):
        for v in detail.get("field_violations", detail.get("fieldViolations", [])):
            out[v["field"]] = v["description"]
    return out


# -- 1. ListDeliveryLogs filters ----------------------------------------------------

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
TYPES = ("reward.claimed", "reward.redeemed", "user.authenticated", "webhook.ping")
STATUSES = (200, 302, 404, 503, 0)
OUTCOMES = {200: "delivered", 302: "retry_scheduled", 404: "failed", 503: "dead", 0: "failed"}


@dataclass(frozen=True)
class Seeded:
    event_id: str
    event_type: str
    config_id: str
    status: int
    outcome: str
    at: datetime
    seq: int = 0  # insertion order: the log's id order


def seed(engine: sa.Engine, org_id: str, config_ids: Sequence[str], count: int) -> list[Seeded]:
    """``count`` attempts, one a minute from T0, cycling types, statuses and configs,
    written out of time order (the newest few first) as late-recorded attempts are."""
    rows = []
    cycle = zip(
        itertools.cycle(TYPES), itertools.cycle(STATUSES), itertools.cycle(config_ids), strict=False
    )
    for i, (type_, status, config_id) in zip(range(count), cycle, strict=False):
        at = T0 + timedelta(minutes=i)
        rows.append(
            Seeded(f"evt_{uuid.uuid4().hex[:20]}", type_, config_id, status, OUTCOMES[status], at)
        )
    order = rows[-3:] + rows[:-3]  # ids not in attempted_at order
    seq = {r.event_id: n for n, r in enumerate(order)}
    rows = [dataclasses.replace(r, seq=seq[r.event_id]) for r in rows]
    with db.write_transaction(engine) as conn:
        for r in sorted(rows, key=lambda r: r.seq):
            body = json.dumps({"id": r.event_id, "type": r.event_type, "data": {}})
            pk = conn.execute(
                sa.insert(EVENTS)
                .values(
                    organisation_id=org_id,
                    event_id=r.event_id,
                    event_type=r.event_type,
                    occurred_at=r.at,
                    payload=body,
                    created_at=r.at,
                )
                .returning(EVENTS.c.pk)
            ).scalar_one()
            dlv = conn.execute(
                sa.insert(DELIVERIES)
                .values(
                    organisation_id=org_id,
                    event_pk=pk,
                    config_id=r.config_id,
                    status=r.outcome if r.outcome != "retry_scheduled" else "pending",
                    attempts=1,
                    next_attempt_at=r.at + timedelta(days=1000),
                    created_at=r.at,
                    updated_at=r.at,
                )
                .returning(DELIVERIES.c.id)
            ).scalar_one()
            conn.execute(
                sa.insert(ATTEMPTS).values(
                    organisation_id=org_id,
                    delivery_id=dlv,
                    event_pk=pk,
                    event_id=r.event_id,
                    event_type=r.event_type,
                    config_id=r.config_id,
                    attempt=1,
                    url="https://example.com/hook",
                    response_status_code=r.status,
                    response_body="",
                    error="" if r.status else "connect failed",
                    duration_ms=5,
                    outcome=r.outcome,
                    attempted_at=r.at,
                )
            )
    return rows


def walk(stack: Stack, page_size: int = 4, **filters: Any) -> list[str]:
    """Every page of ListDeliveryLogs over gRPC with ``filters``: the event ids."""
    out: list[str] = []
    token = ""
    for _ in range(100):
        page = stack.call(
            "ListDeliveryLogs",
            admin_pb2.ListDeliveryLogsRequest(page_size=page_size, page_token=token, **filters),
        )
        out += [entry.event_id for entry in page.logs]
        token = page.next_page_token
        if not token:
            return out
    raise AssertionError("the walk did not end")


def rest_walk(stack: Stack, **params: Any) -> list[str]:
    out: list[str] = []
    token = ""
    for _ in range(100):
        resp = stack.rest(
            "GET", "/webhooks/logs", params={**params, "page_size": 4, "page_token": token}
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        out += [entry["event_id"] for entry in body.get("logs", [])]
        token = body.get("next_page_token", "")
        if not token:
            return out
    raise AssertionError("the walk did not end")


def newest_first(rows: Sequence[Seeded], *, by_time: bool = False) -> list[str]:
    """Expected order: the log's id order (insertion), or attempted_at for a bare
    time range."""
    key = (lambda r: r.at) if by_time else (lambda r: r.seq)
    return [r.event_id for r in sorted(rows, key=key, reverse=True)]


def test_log_filters_combine_page_and_refuse_bad_values(stack: Stack) -> None:
    a, b = stack.config("/a"), stack.config("/b")
    rows = seed(stack.srv.engine, stack.org_id, (a, b), 60)
    since, until = T0 + timedelta(minutes=10), T0 + timedelta(minutes=45)
    in_range = [r for r in rows if since <= r.at < until]

    # A bare time range walks attempt times, newest first, across page boundaries.
    got = walk(stack, since=ts(since), until=ts(until))
    assert got == newest_first(in_range, by_time=True)
    assert walk(stack, since=ts(T0 + timedelta(minutes=55))) == newest_first(
        [r for r in rows if r.at >= T0 + timedelta(minutes=55)], by_time=True
    )
    # Status classes, "no response" included.
    classes: list[tuple[int, range]] = [
        (admin_pb2.STATUS_CLASS_2XX, range(200, 300)),
        (admin_pb2.STATUS_CLASS_3XX, range(300, 400)),
        (admin_pb2.STATUS_CLASS_4XX, range(400, 500)),
        (admin_pb2.STATUS_CLASS_5XX, range(500, 600)),
        (admin_pb2.STATUS_CLASS_NO_RESPONSE, range(0, 1)),
    ]
    for cls, codes in classes:
        expected = newest_first([r for r in rows if r.status in codes])
        assert expected and walk(stack, status_class=cls) == expected, cls
    # Wildcards: a category (one leg per type, merged in id order) and "*".
    assert walk(stack, event_type="reward.*") == newest_first(
        [r for r in rows if r.event_type.startswith("reward.")]
    )
    assert walk(stack, event_type="webhook.*") == newest_first(
        [r for r in rows if r.event_type == "webhook.ping"]
    )
    assert walk(stack, event_type="*") == newest_first(rows)
    # Everything combined with the existing filters.
    combined = [
        r
        for r in in_range
        if r.config_id == a and r.event_type.startswith("reward.") and 500 <= r.status < 600
    ]
    got = walk(
        stack,
        config_id=a,
        event_type="reward.*",
        status_class=admin_pb2.STATUS_CLASS_5XX,
        since=ts(since),
        until=ts(until),
        outcome=admin_pb2.OUTCOME_DEAD,
    )
    assert combined and got == newest_first(combined)
    assert walk(stack, event_type="reward.*", status_class=admin_pb2.STATUS_CLASS_4XX) == (
        newest_first(
            [r for r in rows if r.event_type.startswith("reward.") and 400 <= r.status < 500]
        )
    )

    # The same through Envoy, with the timestamps and enums as query parameters.
    params = {
        "since": since.isoformat().replace("+00:00", "Z"),
        "until": until.isoformat().replace("+00:00", "Z"),
    }
    assert rest_walk(stack, **params) == newest_first(in_range, by_time=True)
    assert rest_walk(stack, event_type="reward.*", status_class="STATUS_CLASS_5XX") == (
        newest_first([r for r in rows if r.event_type.startswith("reward.") and r.status >= 500])
    )

    # Tokens stay bound to their filters.
    first = stack.call(
        "ListDeliveryLogs",
        admin_pb2.ListDeliveryLogsRequest(page_size=2, since=ts(since), until=ts(until)),
    )
    with pytest.raises(grpc.RpcError) as err:
        stack.call(
            "ListDeliveryLogs",
            admin_pb2.ListDeliveryLogsRequest(
                page_size=2, page_token=first.next_page_token, since=ts(since)
            ),
        )
    assert "page_token" in violations(err.value)

    # Bad values: INVALID_ARGUMENT naming the field, in words.
    for request, field, words in (
        (admin_pb2.ListDeliveryLogsRequest(event_type="reward.nope"), "event_type", "wildcard"),
        (admin_pb2.ListDeliveryLogsRequest(event_type="nope.*"), "event_type", "catalog"),
        (
            admin_pb2.ListDeliveryLogsRequest(since=ts(until), until=ts(since)),
            "until",
            "must be after since",
        ),
        (admin_pb2.ListDeliveryLogsRequest(status_class=99), "status_class", "unknown"),  # type: ignore[arg-type]
    ):
        with pytest.raises(grpc.RpcError) as err:
            stack.call("ListDeliveryLogs", request)
        found = violations(err.value)
        assert field in found and words in found[field], found
    bad = stack.rest("GET", "/webhooks/logs", params={"status_class": "STATUS_CLASS_6XX"})
    assert bad.status_code == 400 and "status_class" in bad.text, bad.text
    bad = stack.rest("GET", "/webhooks/logs", params={"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.text, bad.text
    bad = stack.rest("GET", "/webhooks/logs", params={"event_type": "reward.*x"})
    assert "event_type" in rest_violations(bad)
    # Another organisation sees none of it, whatever the filters.
    other = stack.call(
        "ListDeliveryLogs",
        admin_pb2.ListDeliveryLogsRequest(event_type="*", since=ts(T0)),
        key=stack.other_keys["all"],
    )
    assert list(other.logs) == []


# -- 2. Attempt headers ------------------------------------------------------------


def publisher(stack: Stack) -> PublisherClient:
    return PublisherClient(stack.srv.target, stack.keys["events:publish"])


def wait_logs(stack: Stack, count: int, **filters: Any) -> list[admin_pb2.DeliveryLog]:
    def ready() -> list[admin_pb2.DeliveryLog] | None:
        page = stack.call("ListDeliveryLogs", admin_pb2.ListDeliveryLogsRequest(**filters))
        return list(page.logs) if len(page.logs) >= count else None

    return eventually(ready, timeout=20, what=f"{count} log entries for {filters}")


def test_attempt_headers_as_sent_and_received_in_the_full_view(stack: Stack) -> None:
    many = {f"x-extra-{n:02d}": "v" * 10 for n in range(70)}
    stack.rx.program("/h", Reply(200, headers={"x-request-id": "req-42"}), Reply(200, headers=many))
    config_id = stack.config(
        "/h",
        ("reward.*",),
        headers={"authorization": "Bearer s3cr3t-value", "x-api-key": "k-123", "x-team": "pay"},
    )
    test = stack.call("SendTestEvent", admin_pb2.SendTestEventRequest(config_id=config_id)).log
    got = stack.rx.wait_for(1, path="/h")[0]
    sent = {h.name: h.value for h in test.request_headers}
    assert sent["webhook-id"] == got.headers["webhook-id"] == test.event_id
    signature = got.headers["webhook-signature"]
    scheme, whole = signature.split(",", 1)
    assert sent["webhook-signature"] == f"{scheme},{whole[:8]}…" and len(whole) > 20
    assert sent["authorization"] == sent["x-api-key"] == "••••••••"
    assert "s3cr3t-value" not in str(test) and "k-123" not in str(test)
    assert sent["x-team"] == "pay" and sent["content-type"] == "application/json"
    assert sent["user-agent"] == got.headers["user-agent"]
    received = {h.name.lower(): h.value for h in test.response_headers}
    assert received["x-request-id"] == "req-42" and not test.response_headers_truncated

    # A published event (the worker's path): response headers capped at 50.
    with publisher(stack) as pub:
        pub.publish_event(stack.org_id, "reward.claimed", example("reward.claimed"))
    entry = wait_logs(stack, 1, event_type="reward.claimed")[0]
    assert entry.response_headers_truncated and len(entry.response_headers) == 50
    assert {h.name for h in entry.request_headers} >= {"webhook-signature", "x-team"}

    # BASIC leaves them out; FULL (the default) has them, over REST too.
    basic = stack.call(
        "ListDeliveryLogs",
        admin_pb2.ListDeliveryLogsRequest(view=admin_pb2.DELIVERY_LOG_VIEW_BASIC),
    )
    assert all(not e.request_headers and not e.response_headers for e in basic.logs)
    assert {e.response_headers_truncated for e in basic.logs} == {True, False}
    rest = stack.rest("GET", "/webhooks/logs", params={"event_id": test.event_id}).json()
    shown = {h["name"]: h["value"] for h in rest["logs"][0]["request_headers"]}
    assert shown["authorization"] == "••••••••" and shown["x-team"] == "pay"
    params = {"event_id": test.event_id, "view": "DELIVERY_LOG_VIEW_BASIC"}
    rest_basic = stack.rest("GET", "/webhooks/logs", params=params).json()
    assert not rest_basic["logs"][0].get("request_headers")


# -- 3. Test events of any subscribed type -------------------------------------------


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def test_test_events_of_a_subscribed_type_with_example_or_given_data(stack: Stack) -> None:
    config_id = stack.config("/t", ("reward.*", "webhook.*"))
    catalog_example = example("reward.claimed")
    # No data: the catalog example, delivered and answered as the attempt.
    log = stack.call(
        "SendTestEvent",
        admin_pb2.SendTestEventRequest(config_id=config_id, event_type="reward.claimed"),
    ).log
    body = json.loads(stack.rx.wait_for(1, path="/t")[0].body)
    assert body["type"] == log.event_type == "reward.claimed"
    assert body["data"] == catalog_example and log.outcome == admin_pb2.OUTCOME_DELIVERED
    assert json.loads(log.request_body)["data"] == catalog_example
    # Given data, checked like a publish; an operational type it names works too.
    mine = {**catalog_example, "points": "7", "user_id": "usr_mine"}
    log = stack.call(
        "SendTestEvent",
        admin_pb2.SendTestEventRequest(
            config_id=config_id, event_type="reward.claimed", data=struct(mine)
        ),
    ).log
    assert json.loads(stack.rx.wait_for(2, path="/t")[1].body)["data"]["user_id"] == "usr_mine"
    disabled = stack.call(
        "SendTestEvent",
        admin_pb2.SendTestEventRequest(config_id=config_id, event_type="webhook.endpoint_disabled"),
    ).log
    assert disabled.event_type == "webhook.endpoint_disabled"
    # The ping stays the default.
    ping = stack.call("SendTestEvent", admin_pb2.SendTestEventRequest(config_id=config_id)).log
    assert ping.event_type == "webhook.ping"
    # Only this endpoint received them: another endpoint subscribed to reward.* got nothing.
    other = stack.config("/other", ("reward.*",))
    assert other and stack.rx.count("/other") == 0

    # Refusals name the field, in words; nothing is sent.
    sent = stack.rx.count("/t")
    for request, field, words in (
        (
            admin_pb2.SendTestEventRequest(
                config_id=config_id, event_type="reward.claimed", data=struct({"points": "x"})
            ),
            "data.points",
            "",
        ),
        (
            admin_pb2.SendTestEventRequest(
                config_id=config_id,
                event_type="reward.claimed",
                data=struct({**catalog_example, "nope": 1}),
            ),
            "data.nope",
            "unknown field",
        ),
        (
            admin_pb2.SendTestEventRequest(config_id=config_id, event_type="user.authenticated"),
            "event_type",
            "does not subscribe",
        ),
        (
            admin_pb2.SendTestEventRequest(config_id=config_id, event_type="reward.clamed"),
            "event_type",
            "reward.claimed",
        ),
        (
            admin_pb2.SendTestEventRequest(config_id=config_id, data=struct({"a": 1})),
            "data",
            "event_type",
        ),
    ):
        with pytest.raises(grpc.RpcError) as err:
            stack.call("SendTestEvent", request)
        found = violations(err.value)
        assert field in found and words in found[field], found
    assert stack.rx.count("/t") == sent

    # Through Envoy: the JSON body of POST /webhooks/configs/{id}:test.
    resp = stack.rest(
        "POST",
        f"/webhooks/configs/{config_id}:test",
        json={"event_type": "reward.redeemed", "data": example("reward.redeemed")},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["log"]["event_type"] == "reward.redeemed"
    assert resp.json()["log"]["outcome"] == "OUTCOME_DELIVERED"
    bad = stack.rest(
        "POST", f"/webhooks/configs/{config_id}:test", json={"event_type": "user.authenticated"}
    )
    assert "event_type" in rest_violations(bad)
