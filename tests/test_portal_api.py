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

from tests.support.clients import ClientFactory, admin_client, client_kind  # noqa: F401
from tests.support.envoy import running_gateway
from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Receiver, Reply, running_receiver
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks.v1 import admin_pb2, admin_pb2_grpc
from webhooks_client import (
    DeliveryOutcome,
    DeliveryStatus,
    EventView,
    InvalidArgumentError,
    NotFoundError,
    PublisherClient,
)
from webhooks_service.core import retention
from webhooks_service.domain import FinishedAttempt, Outcome
from webhooks_service.gateway import EnvoyProcess
from webhooks_service.storage import db, queue
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


def walk_entries(stack: Stack, page_size: int = 4, **filters: Any) -> list[admin_pb2.DeliveryLog]:
    """Every page of ListDeliveryLogs over gRPC with ``filters``."""
    out: list[admin_pb2.DeliveryLog] = []
    token = ""
    for _ in range(100):
        page = stack.call(
            "ListDeliveryLogs",
            admin_pb2.ListDeliveryLogsRequest(page_size=page_size, page_token=token, **filters),
        )
        out += list(page.logs)
        token = page.next_page_token
        if not token:
            return out
    raise AssertionError("the walk did not end")


def walk(stack: Stack, page_size: int = 4, **filters: Any) -> list[str]:
    """The event ids of every page of ListDeliveryLogs with ``filters``."""
    return [entry.event_id for entry in walk_entries(stack, page_size, **filters)]


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


# -- 4. The event view, and 6. deleted endpoints named by their URL -------------------


def test_event_view_every_endpoint_deleted_ones_included_within_the_org(stack: Stack) -> None:
    stack.rx.program("/ev-b", Reply(500), Reply(200))
    a, b = stack.config("/ev-a"), stack.config("/ev-b")
    with publisher(stack) as pub:
        event_id = pub.publish_event(
            stack.org_id, "reward.claimed", example("reward.claimed")
        ).event_id

    def delivered() -> bool:
        view = stack.call("GetEvent", admin_pb2.GetEventRequest(event_id=event_id))
        done = admin_pb2.DELIVERY_STATUS_DELIVERED
        return all(d.delivery.status == done for d in view.deliveries)

    eventually(delivered, timeout=20, what="both deliveries delivered")
    stack.call("DeleteWebhookConfig", admin_pb2.DeleteWebhookConfigRequest(config_id=b))
    view = stack.call("GetEvent", admin_pb2.GetEventRequest(event_id=event_id))
    assert view.event_type == "reward.claimed" and view.payload
    assert view.payload.encode() == stack.rx.requests("/ev-a")[0].body
    assert json.loads(view.payload)["data"] == example("reward.claimed")
    by_config = {d.delivery.config_id: d for d in view.deliveries}
    assert set(by_config) == {a, b}
    assert by_config[a].url == stack.rx.url("/ev-a") and not by_config[a].endpoint_deleted
    assert by_config[b].url == stack.rx.url("/ev-b") and by_config[b].endpoint_deleted
    assert [x.response_status_code for x in by_config[b].attempts] == [200, 500]
    assert by_config[b].delivery.attempts == 2 and all(
        x.endpoint_deleted for x in by_config[b].attempts
    )
    assert not by_config[b].attempts[0].request_body  # the BASIC view

    # Through Envoy.
    rest = stack.rest("GET", f"/webhooks/events/{event_id}")
    assert rest.status_code == 200, rest.text
    deliveries = {d["delivery"]["config_id"]: d for d in rest.json()["deliveries"]}
    assert deliveries[b]["endpoint_deleted"] and deliveries[b]["url"] == stack.rx.url("/ev-b")
    # Another organisation's id and an unknown one: the same NOT_FOUND; a malformed one
    # INVALID_ARGUMENT naming event_id.
    for key, eid in ((stack.other_keys["all"], event_id), (None, "evt_unknown")):
        with pytest.raises(grpc.RpcError) as err:
            stack.call("GetEvent", admin_pb2.GetEventRequest(event_id=eid), key=key)
        assert err.value.code() is grpc.StatusCode.NOT_FOUND
        assert stack.rest("GET", f"/webhooks/events/{eid}", key=key).status_code == 404
    with pytest.raises(grpc.RpcError) as err:
        stack.call("GetEvent", admin_pb2.GetEventRequest(event_id="bad id!"))
    assert "event_id" in violations(err.value)


def test_the_log_names_deleted_endpoints_by_the_url_of_each_attempt(stack: Stack) -> None:
    config_id = stack.config("/old")
    first = stack.call("SendTestEvent", admin_pb2.SendTestEventRequest(config_id=config_id)).log
    stack.call(
        "PutWebhookConfig",
        admin_pb2.PutWebhookConfigRequest(
            id=config_id, url=stack.rx.url("/new"), event_types=["*"]
        ),
    )
    second = stack.call("SendTestEvent", admin_pb2.SendTestEventRequest(config_id=config_id)).log
    # A pending delivery (its retry due far ahead) that the deletion cancels.
    with db.write_transaction(stack.srv.engine) as conn:
        pk = conn.execute(
            sa.insert(EVENTS)
            .values(
                organisation_id=stack.org_id,
                event_id="evt_pending_one",
                event_type="reward.claimed",
                occurred_at=T0,
                payload="{}",
                created_at=T0,
            )
            .returning(EVENTS.c.pk)
        ).scalar_one()
        conn.execute(
            sa.insert(DELIVERIES).values(
                organisation_id=stack.org_id,
                event_pk=pk,
                config_id=config_id,
                status="pending",
                attempts=1,
                next_attempt_at=datetime.now(UTC) + timedelta(days=1),
                created_at=T0,
                updated_at=T0,
            )
        )
    deleted = stack.call(
        "DeleteWebhookConfig", admin_pb2.DeleteWebhookConfigRequest(config_id=config_id)
    )
    assert deleted.cancelled_deliveries == 1
    logs = {e.event_id: e for e in walk_entries(stack, config_id=config_id)}
    assert logs[first.event_id].url == stack.rx.url("/old")
    assert logs[second.event_id].url == stack.rx.url("/new")
    cancelled = logs["evt_pending_one"]
    assert cancelled.outcome == admin_pb2.OUTCOME_CANCELLED and cancelled.url == stack.rx.url(
        "/new"
    )
    assert all(e.endpoint_deleted for e in logs.values())
    rest = stack.rest("GET", "/webhooks/logs", params={"config_id": config_id}).json()["logs"]
    assert {e["url"] for e in rest} == {stack.rx.url("/old"), stack.rx.url("/new")}
    assert all(e["endpoint_deleted"] for e in rest)


# -- 5. Per-endpoint stats -------------------------------------------------------------


def finished_attempt(
    config_id: str, org_id: str, at: datetime, ms: int, ok: bool
) -> FinishedAttempt:
    return FinishedAttempt(
        delivery_id=0,
        claim_token="none",
        attempt=1,
        organisation_id=org_id,
        config_id=config_id,
        event_pk=0,
        event_id="evt_x",
        event_type="reward.claimed",
        url="https://example.com",
        outcome=Outcome.DELIVERED if ok else Outcome.FAILED,
        attempted_at=at,
        response_status_code=200 if ok else 500,
        duration_ms=ms,
    )


def test_endpoint_stats_hourly_buckets_and_latency_percentiles(stack: Stack) -> None:
    config_id = stack.config("/s")
    other = stack.config("/s2")
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    # Recorded as the worker records them (queue.finish_batch, in batches):
    # 100 attempts 3 hours ago taking 1..100 ms, every 4th failing; 7 a day and
    # a half ago (outside the window); 50 slow ones to another endpoint.
    three_ago = hour - timedelta(hours=3) + timedelta(minutes=5)
    batch = [
        finished_attempt(config_id, stack.org_id, three_ago, ms, ms % 4 != 0)
        for ms in range(1, 101)
    ]
    batch += [
        finished_attempt(config_id, stack.org_id, now - timedelta(hours=36), 5, False)
        for _ in range(7)
    ]
    batch += [finished_attempt(other, stack.org_id, three_ago, 9000, True) for _ in range(50)]
    for n in range(0, len(batch), 40):
        queue.finish_batch(stack.srv.engine, batch[n : n + 40], now=now)
    # And real attempts through the server: two test events now, one failing.
    stack.rx.program("/s", Reply(200, delay=0.02), Reply(503))
    for _ in range(2):
        stack.call("SendTestEvent", admin_pb2.SendTestEventRequest(config_id=config_id))

    stats = stack.call("GetEndpointStats", admin_pb2.GetEndpointStatsRequest(config_id=config_id))
    assert len(stats.buckets) == 24
    starts = [b.start.ToDatetime(tzinfo=UTC) for b in stats.buckets]
    # The window ends with the hour of the call (the test may cross an hour).
    last = starts[-1]
    assert last in (hour, hour + timedelta(hours=1))
    assert starts == [last - timedelta(hours=23 - n) for n in range(24)]
    assert stats.until.ToDatetime(tzinfo=UTC) == last + timedelta(hours=1)
    by_start = {b.start.ToDatetime(tzinfo=UTC): (b.attempts, b.failures) for b in stats.buckets}
    assert by_start[hour - timedelta(hours=3)] == (100, 25)
    recent = [v for start, v in by_start.items() if start >= hour]  # the two test events
    assert (sum(a for a, _ in recent), sum(f for _, f in recent)) == (2, 1)
    assert sum(b.attempts for b in stats.buckets) == stats.attempts == 102
    assert stats.failures == 26
    # True p50 / p90 / p99 of the 102 durations are ~50, ~90, ~99 ms: each estimate
    # lies within the histogram bucket of the true value.
    assert 40 <= stats.latency_p50_ms <= 60
    assert 60 <= stats.latency_p90_ms <= 100 and 60 <= stats.latency_p99_ms <= 100
    slow = stack.call("GetEndpointStats", admin_pb2.GetEndpointStatsRequest(config_id=other))
    assert slow.attempts == 50 and 6000 <= slow.latency_p50_ms <= 10000

    # Through Envoy, and NOT_FOUND for another organisation's endpoint.
    rest = stack.rest("GET", f"/webhooks/configs/{config_id}/stats")
    assert rest.status_code == 200, rest.text
    assert int(rest.json()["attempts"]) == 102 and len(rest.json()["buckets"]) == 24
    assert (
        stack.rest(
            "GET", f"/webhooks/configs/{config_id}/stats", key=stack.other_keys["all"]
        ).status_code
        == 404
    )
    with pytest.raises(grpc.RpcError) as err:
        stack.call("GetEndpointStats", admin_pb2.GetEndpointStatsRequest(config_id="nope"))
    assert "config_id" in violations(err.value)
    # A deleted endpoint keeps its stats while its log is kept.
    stack.call("DeleteWebhookConfig", admin_pb2.DeleteWebhookConfigRequest(config_id=other))
    kept = stack.call("GetEndpointStats", admin_pb2.GetEndpointStatsRequest(config_id=other))
    assert kept.attempts == 50


def test_retention_drops_stats_hours_older_than_two_days(stack: Stack) -> None:
    config_id = stack.config("/r")
    now = datetime.now(UTC)
    old = [finished_attempt(config_id, stack.org_id, now - timedelta(hours=50), 5, True)]
    recent = [finished_attempt(config_id, stack.org_id, now - timedelta(hours=2), 5, True)]
    queue.finish_batch(stack.srv.engine, old + recent, now=now)
    with stack.srv.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM endpoint_stats")).scalar_one() == 2
    retention.prune(stack.srv.engine, stack.srv.settings, now=now)
    with stack.srv.engine.connect() as conn:
        hours = conn.execute(sa.text("SELECT hour FROM endpoint_stats")).scalars().all()
    assert len(hours) == 1
    stats = stack.call("GetEndpointStats", admin_pb2.GetEndpointStatsRequest(config_id=config_id))
    assert stats.attempts == 1


# -- the Python clients (blocking and asyncio) ------------------------------------------


def test_clients_take_the_new_filters_and_typed_test_events(
    stack: Stack,
    admin_client: ClientFactory,  # noqa: F811
) -> None:
    config_id = stack.config("/c", ("reward.*",), headers={"x-token": "t0p"})
    with admin_client(stack.srv.target, stack.keys["all"]) as admin:
        log = admin.send_test_event(
            config_id, event_type="reward.claimed", data=example("reward.claimed")
        )
        assert log.event_type == "reward.claimed"
        assert dict(log.request_headers)["x-token"] == "••••••••"
        assert dict(log.response_headers) and not log.endpoint_deleted
        ping = admin.send_test_event(config_id)
        since = log.attempted_at - timedelta(seconds=1)
        entries = list(
            admin.iter_delivery_logs(since=since, status_class="2xx", event_type="reward.*")
        )
        assert [e.id for e in entries] == [log.id]
        assert [e.id for e in admin.iter_delivery_logs(event_type="webhook.*")] == [ping.id]
        page = admin.list_delivery_logs(
            until=log.attempted_at, status_class="STATUS_CLASS_2XX", bodies=False
        )
        assert page.logs == ()
        with pytest.raises(InvalidArgumentError) as err:
            admin.send_test_event(config_id, event_type="user.authenticated")
        assert "event_type" in str(err.value)


def test_clients_read_the_event_view_and_the_endpoint_stats(
    stack: Stack,
    admin_client: ClientFactory,  # noqa: F811
) -> None:
    stack.rx.program("/cv", Reply(503), Reply(200))
    config_id = stack.config("/cv")
    with publisher(stack) as pub:
        event_id = pub.publish_event(
            stack.org_id, "reward.claimed", example("reward.claimed")
        ).event_id
    with admin_client(stack.srv.target, stack.keys["all"]) as admin:

        def delivered() -> EventView | None:
            view: EventView = admin.get_event(event_id)
            done = [d.delivery.status for d in view.deliveries] == [DeliveryStatus.DELIVERED]
            return view if done else None

        view = eventually(delivered, timeout=20, what="the event delivered on its 2nd attempt")
        assert view.event_id == event_id and view.event_type == "reward.claimed"
        assert view.payload.encode() == stack.rx.requests("/cv")[-1].body
        assert view.occurred_at is not None and view.created_at is not None
        (one,) = view.deliveries
        assert one.url == stack.rx.url("/cv") and not one.endpoint_deleted
        assert one.delivery.config_id == config_id and one.delivery.attempts == 2
        assert [a.response_status_code for a in one.attempts] == [200, 503]  # newest first
        assert [a.outcome for a in one.attempts] == [
            DeliveryOutcome.DELIVERED,
            DeliveryOutcome.RETRY_SCHEDULED,
        ]

        stats = admin.get_endpoint_stats(config_id)
        assert len(stats.buckets) == 24 and stats.since and stats.until
        assert (stats.attempts, stats.failures) == (2, 1)
        assert sum(b.attempts for b in stats.buckets) == 2
        assert stats.buckets[-1].start and stats.buckets[-1].start <= datetime.now(UTC)
        assert stats.latency_p99_ms >= stats.latency_p50_ms > 0

        with pytest.raises(NotFoundError):
            admin.get_event("evt_unknown")
        with pytest.raises(InvalidArgumentError) as err:
            admin.get_endpoint_stats("not a config id!")
        assert "config_id" in str(err.value)
    with (
        admin_client(stack.srv.target, stack.other_keys["all"]) as other,
        pytest.raises(NotFoundError),  # another organisation's event
    ):
        other.get_event(event_id)
