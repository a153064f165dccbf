"""The operating admin RPCs: RetryDelivery, ReplayDeliveries, SendTestEvent,
RotateWebhookSecret.

Over gRPC (the typed client) on SQLite and PostgreSQL, against the real server
with its delivery worker (``running_server(worker=True)``, a tiny retry
schedule) and real HTTP receivers; then through the real Envoy gateway (REST),
one happy path and one error each.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.delivery_env import DeliveryEnv as Env
from tests.support.delivery_env import delivery_env, rest_delivery_env
from tests.support.receiver import Reply
from tests.support.server import make_org_and_keys
from webhooks_client import (
    AdminClient,
    DeliveryOutcome,
    DeliveryStatus,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
)
from webhooks_service.core import redelivery

FAST = {"retry_schedule": (0.05, 0.05)}  # three attempts, then dead
Out = DeliveryOutcome
Status = DeliveryStatus


@pytest.fixture
def env(request: pytest.FixtureRequest, database_url: str) -> Iterator[Env]:
    with delivery_env(database_url, getattr(request, "param", FAST)) as e:
        yield e


def other_org_admin(env: Env) -> AdminClient:
    _, keys = make_org_and_keys(env.srv.engine, "Globex")
    return AdminClient(env.srv.target, keys["all"])


# -- RetryDelivery ---------------------------------------------------------------


def test_retry_gives_a_dead_delivery_one_more_attempt(env: Env) -> None:
    env.rx.program("/down", Reply(500), Reply(500), Reply(500), Reply(200, b"back"))
    config, _ = env.config("/down")
    env.publish(id="evt_dead")
    dead = env.wait_logs(1, outcome="dead")[0]
    assert dead.attempt == 3

    result = env.admin.retry_delivery(dead.delivery_id)
    assert result.scheduled is True
    assert result.delivery.id == dead.delivery_id
    assert result.delivery.config_id == config.id and result.delivery.event_id == "evt_dead"
    assert result.delivery.status == Status.PENDING
    assert result.delivery.attempts == 3

    got = env.rx.wait_for(4, "/down")
    assert got[3].headers["webhook-id"] == "evt_dead"
    entry = env.wait_logs(1, outcome="delivered")[0]
    # The same delivery, numbering continued; the schedule was not restarted.
    assert (entry.delivery_id, entry.attempt, entry.response_body) == (dead.delivery_id, 4, "back")


def test_retry_twice_while_pending_makes_one_attempt(env: Env) -> None:
    env.rx.program("/slow", Reply(400), Reply(200, delay=0.5))
    env.config("/slow")
    env.publish()
    failed = env.wait_logs(1, outcome="failed")[0]
    first = env.admin.retry_delivery(failed.delivery_id)
    second = env.admin.retry_delivery(failed.delivery_id)  # due or in flight: no-op
    assert (first.scheduled, second.scheduled) == (True, False)
    assert second.delivery.status == Status.PENDING
    env.wait_logs(1, outcome="delivered")
    env.settled()
    assert env.rx.count("/slow") == 2


def test_retry_re_sends_a_delivered_delivery_with_the_same_event_id(env: Env) -> None:
    env.config("/ok")
    event_id = env.publish().event_id
    delivered = env.wait_logs(1)[0]
    assert delivered.outcome == Out.DELIVERED
    assert env.admin.retry_delivery(delivered.delivery_id).scheduled
    first, again = env.rx.wait_for(2, "/ok")
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == event_id
    assert first.body == again.body
    assert [e.attempt for e in env.wait_logs(2)] == [2, 1]


@pytest.mark.parametrize("env", [{"retry_schedule": (60.0, 60.0)}], indirect=True)
def test_retry_brings_a_scheduled_retry_forward(env: Env) -> None:
    env.rx.program("/later", Reply(503), Reply(200))
    env.config("/later")
    env.publish()
    waiting = env.wait_logs(1)[0]
    assert waiting.outcome == Out.RETRY_SCHEDULED  # next attempt in ~60 s
    result = env.admin.retry_delivery(waiting.delivery_id)
    assert result.scheduled
    due = result.delivery.next_attempt_at
    assert due is not None
    assert due <= datetime.now(UTC) + timedelta(seconds=1)
    env.rx.wait_for(2, "/later", timeout=5)
    assert env.wait_logs(1, outcome="delivered")[0].attempt == 2


def test_retry_errors(env: Env) -> None:
    env.rx.program("/no", Reply(400))
    config, _ = env.config("/no")
    env.publish()
    dlv = env.wait_logs(1)[0].delivery_id

    with pytest.raises(InvalidArgumentError) as bad:
        env.admin.retry_delivery("att_1")
    assert [v.field for v in bad.value.field_violations] == ["delivery_id"]
    with pytest.raises(InvalidArgumentError):
        env.admin.retry_delivery("")
    with pytest.raises(NotFoundError):
        env.admin.retry_delivery("dlv_00000000000f423f")
    with other_org_admin(env) as other, pytest.raises(NotFoundError):
        other.retry_delivery(dlv)  # another organisation's id is NOT_FOUND
    reader = AdminClient(env.srv.target, env.keys["webhooks:read"])
    with reader, pytest.raises(PermissionDeniedError):
        reader.retry_delivery(dlv)

    env.admin.put_webhook_config(id=config.id, url=config.url, event_types=["*"], enabled=False)
    with pytest.raises(FailedPreconditionError, match="disabled"):
        env.admin.retry_delivery(dlv)
    assert env.rx.count("/no") == 1


# -- ReplayDeliveries --------------------------------------------------------------


def test_replay_puts_failed_and_dead_deliveries_of_a_range_back(env: Env) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    env.rx.program("/outage", Reply(400), Reply(400), Reply(503))  # failed, failed, then dead
    config, _ = env.config("/outage")
    other, _ = env.config("/other")
    env.rx.program("/other", Reply(400))
    for i in range(3):
        env.publish(id=f"evt_r{i}")
    env.wait_logs(2, config_id=config.id, outcome="failed")
    env.wait_logs(1, config_id=config.id, outcome="dead")
    env.wait_logs(3, config_id=other.id, outcome="failed")

    # The endpoint recovers before the replay: the replayed attempt may start before
    # the call returns.
    env.rx.program("/outage", Reply(200, delay=0.3))
    assert env.admin.replay_deliveries(config.id, since=start, outcomes=["dead"]) == 1
    env.rx.wait_for(6, "/outage")  # 5 attempts before, the dead one's retry now
    assert env.admin.replay_deliveries(config.id, since=start) == 2  # the failed ones
    # Again at once: they are pending (or in flight), nothing more to replay.
    assert env.admin.replay_deliveries(config.id, since=start) == 0
    got = env.rx.wait_for(8, "/outage")
    assert {r.headers["webhook-id"] for r in got[5:]} == {"evt_r0", "evt_r1", "evt_r2"}
    assert len(env.wait_logs(3, config_id=config.id, outcome="delivered")) == 3
    # The other configuration's failures were not touched.
    env.settled()
    assert env.rx.count("/other") == 3
    # A range after the events replays nothing.
    later = datetime.now(UTC)
    assert env.admin.replay_deliveries(other.id, since=later) == 0


def test_replay_refuses_bad_ranges_and_outcomes(env: Env) -> None:
    config, _ = env.config("/x")
    now = datetime.now(UTC)

    def violations(**kwargs: Any) -> list[str]:
        with pytest.raises(InvalidArgumentError) as err:
            env.admin.replay_deliveries(config.id, **kwargs)
        return [v.field for v in err.value.field_violations]

    assert violations(since=now - timedelta(days=32)) == ["until"]
    assert violations(since=now, until=now - timedelta(hours=1)) == ["until"]
    assert violations(since=now - timedelta(hours=1), outcomes=["delivered"]) == ["outcomes[0]"]
    with pytest.raises(InvalidArgumentError):
        env.admin.replay_deliveries("", since=now - timedelta(hours=1))
    with pytest.raises(NotFoundError):
        env.admin.replay_deliveries("whc_nope", since=now - timedelta(hours=1))
    with other_org_admin(env) as other, pytest.raises(NotFoundError):
        other.replay_deliveries(config.id, since=now - timedelta(hours=1))


def test_replay_past_the_cap_replays_nothing(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    env.rx.program("/cap", Reply(400))
    config, _ = env.config("/cap")
    for _ in range(3):
        env.publish()
    env.wait_logs(3, outcome="failed")
    monkeypatch.setattr(redelivery, "MAX_REPLAY_DELIVERIES", 2)
    with pytest.raises(FailedPreconditionError, match="more than 2"):
        env.admin.replay_deliveries(config.id, since=start)
    env.admin.put_webhook_config(id=config.id, url=config.url, event_types=["*"], enabled=False)
    monkeypatch.setattr(redelivery, "MAX_REPLAY_DELIVERIES", 10)
    with pytest.raises(FailedPreconditionError, match="disabled"):
        env.admin.replay_deliveries(config.id, since=start)
    env.settled()
    assert env.rx.count("/cap") == 3


@pytest.mark.parametrize("env", [{**FAST, "replay_deliveries_per_hour": 4}], indirect=True)
def test_replay_is_budgeted_per_organisation(env: Env) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    env.rx.program("/budget", Reply(400))
    config, _ = env.config("/budget")
    for _ in range(3):
        env.publish()
    env.wait_logs(3, outcome="failed")
    assert env.admin.replay_deliveries(config.id, since=start) == 3
    env.wait_logs(6, outcome="failed")
    # 1 left of 4 per hour: 3 match, nothing is replayed, the error says why.
    with pytest.raises(RateLimitedError, match="1 left of 4 per hour"):
        env.admin.replay_deliveries(config.id, since=start)
    env.settled()
    assert env.rx.count("/budget") == 6
    with other_org_admin(env) as other:  # another organisation has its own budget
        other_config = other.put_webhook_config(url=env.rx.url("/o"), event_types=["*"])
        assert other.replay_deliveries(other_config.config.id, since=start) == 0


# -- SendTestEvent -----------------------------------------------------------------


def test_24_concurrent_test_events_to_one_config_all_succeed(env: Env) -> None:
    """Concurrent finishes for one configuration (its health counters) never
    deadlock: each is answered with its own delivered attempt."""
    env.rx.program("/concurrent", Reply(200, delay=0.05))
    config, _ = env.config("/concurrent")
    with ThreadPoolExecutor(24) as pool:
        entries = list(pool.map(lambda _: env.admin.send_test_event(config.id), range(24)))
    assert [e.outcome for e in entries] == [Out.DELIVERED] * 24
    assert len({e.event_id for e in entries}) == 24
    assert env.rx.count("/concurrent") == 24
    (listed,) = [c for c in env.admin.list_webhook_configs() if c.id == config.id]
    assert listed.health.attempts == 24 and listed.health.successes == 24


@pytest.mark.parametrize("env", [{**FAST, "test_events_per_minute": 6}], indirect=True)
def test_test_events_are_budgeted_per_organisation(env: Env) -> None:
    config, _ = env.config("/pings")
    for _ in range(3):  # half a minute's worth at once
        assert env.admin.send_test_event(config.id).outcome == Out.DELIVERED
    with pytest.raises(RateLimitedError, match="at most 6 per minute"):
        env.admin.send_test_event(config.id)
    assert env.rx.count("/pings") == 3
    with other_org_admin(env) as other:
        other_config = other.put_webhook_config(url=env.rx.url("/o"), event_types=["*"])
        assert other.send_test_event(other_config.config.id).outcome == Out.DELIVERED


def test_test_event_is_a_signed_ping_returned_as_its_attempt(env: Env) -> None:
    config, secret = env.config("/ping", types=("reward.claimed",))  # not subscribed to ping
    entry = env.admin.send_test_event(config.id)
    assert entry.event_type == "webhook.ping"
    assert (entry.outcome, entry.response_status_code, entry.attempt) == (
        Out.DELIVERED,
        200,
        1,
    )
    assert entry.config_id == config.id and entry.delivery_id.startswith("dlv_")
    (got,) = env.rx.requests("/ping")
    assert Webhook(secret).verify(got.body, got.headers) is not None
    body = json.loads(got.body)
    assert body["type"] == "webhook.ping" and body["id"] == entry.event_id
    assert body["data"] == {"config_id": config.id}
    assert entry.request_body.encode() == got.body
    # In the log like any attempt, and filterable by its type.
    (logged,) = env.admin.iter_delivery_logs(event_type="webhook.ping")
    assert logged.id == entry.id


def test_a_failing_test_event_is_failed_and_not_retried(env: Env) -> None:
    env.rx.program("/broken", Reply(503, b"maintenance"))
    config, _ = env.config("/broken")
    entry = env.admin.send_test_event(config.id)
    assert (entry.outcome, entry.response_status_code) == (Out.FAILED, 503)
    assert entry.response_body == "maintenance" and entry.next_attempt_at is None
    env.settled()
    assert env.rx.count("/broken") == 1
    assert len(list(env.admin.iter_delivery_logs(config_id=config.id))) == 1


def test_test_event_errors(env: Env) -> None:
    config, _ = env.config("/t")
    with pytest.raises(NotFoundError):
        env.admin.send_test_event("whc_nope")
    with other_org_admin(env) as other, pytest.raises(NotFoundError):
        other.send_test_event(config.id)
    with pytest.raises(InvalidArgumentError):
        env.admin.send_test_event("")
    env.admin.put_webhook_config(id=config.id, url=config.url, event_types=["*"], enabled=False)
    with pytest.raises(FailedPreconditionError, match="disabled"):
        env.admin.send_test_event(config.id)
    with pytest.raises(InvalidArgumentError):  # reserved: cannot be published
        env.publish("webhook.ping")
    assert env.rx.count("/t") == 0


# -- RotateWebhookSecret -----------------------------------------------------------


def test_rotation_signs_with_both_secrets_during_the_grace_period(env: Env) -> None:
    config, old = env.config("/rot")
    rotated = env.admin.rotate_webhook_secret(config.id)
    new = rotated.secret
    assert new.startswith("whsec_") and new != old
    assert rotated.config.secret_hint == new[:8] + "…"
    assert rotated.config.url == config.url and list(rotated.config.event_types) == ["*"]
    expires = rotated.previous_secret_expires_at
    assert expires is not None
    grace = timedelta(seconds=env.srv.settings.secret_rotation_grace_seconds)
    assert abs(expires - (datetime.now(UTC) + grace)) < timedelta(seconds=30)

    env.publish()
    (got,) = env.rx.wait_for(1, "/rot")
    assert len(got.headers["webhook-signature"].split()) == 2
    Webhook(new).verify(got.body, got.headers)
    Webhook(old).verify(got.body, got.headers)

    given = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
    chosen = env.admin.rotate_webhook_secret(config.id, secret=given)
    assert chosen.secret == ""  # given by the caller: not echoed
    assert chosen.config.secret_hint == given[:8] + "…"
    ping = env.admin.send_test_event(config.id)
    assert ping.outcome == Out.DELIVERED
    last = env.rx.requests("/rot")[-1]
    Webhook(given).verify(last.body, last.headers)
    Webhook(new).verify(last.body, last.headers)  # the one replaced just now still signs


def test_rotation_errors(env: Env) -> None:
    config, secret = env.config("/r")
    with pytest.raises(InvalidArgumentError) as bad:
        env.admin.rotate_webhook_secret(config.id, secret="not-a-secret")
    assert [v.field for v in bad.value.field_violations] == ["secret"]
    with pytest.raises(InvalidArgumentError, match="current"):
        env.admin.rotate_webhook_secret(config.id, secret=secret)
    with pytest.raises(NotFoundError):
        env.admin.rotate_webhook_secret("whc_nope")
    with other_org_admin(env) as other, pytest.raises(NotFoundError):
        other.rotate_webhook_secret(config.id)
    reader = AdminClient(env.srv.target, env.keys["webhooks:read"])
    with reader, pytest.raises(PermissionDeniedError):
        reader.rotate_webhook_secret(config.id)
    assert env.admin.list_webhook_configs()[0].secret_hint == secret[:8] + "…"


# -- REST through the gateway ------------------------------------------------------


@pytest.fixture(scope="module")
def rest_env(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Env, str]]:
    with rest_delivery_env(sqlite_template, tmp_path_factory, "admin-rpcs-db", FAST) as pair:
        yield pair


@pytest.fixture
def rest(rest_env: tuple[Env, str]) -> Iterator[httpx.Client]:
    env, base_url = rest_env
    headers = {"authorization": f"Bearer {env.keys['all']}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=20) as client:
        yield client


def error(resp: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert set(body) == {"code", "message", "details"} and body["code"] == code, body
    return body


@pytest.mark.gateway
def test_rest_retry_and_replay(rest_env: tuple[Env, str], rest: httpx.Client) -> None:
    env, _ = rest_env
    start = datetime.now(UTC) - timedelta(seconds=1)
    env.rx.program("/rest-retry", Reply(400), Reply(200))
    config, _ = env.config("/rest-retry")
    env.publish()
    failed = env.wait_logs(1, config_id=config.id, outcome="failed")[0]

    resp = rest.post(f"/webhooks/deliveries/{failed.delivery_id}:retry", json={})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["scheduled"] is True
    assert body["delivery"]["id"] == failed.delivery_id
    assert body["delivery"]["status"] == "DELIVERY_STATUS_PENDING"
    env.wait_logs(1, config_id=config.id, outcome="delivered")
    assert rest.post("/webhooks/deliveries/dlv_00000000000f423f:retry").status_code == 404
    resp = rest.get(f"/webhooks/deliveries/{failed.delivery_id}:retry")
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"

    env.rx.program("/rest-retry", Reply(400), Reply(200))
    env.publish()
    env.wait_logs(2, config_id=config.id, outcome="failed")
    since = start.isoformat().replace("+00:00", "Z")
    resp = rest.post(f"/webhooks/configs/{config.id}:replay", json={"since": since})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"replayed": 1}  # the first one was delivered by its retry
    env.wait_logs(2, config_id=config.id, outcome="delivered")
    bad = rest.post(
        f"/webhooks/configs/{config.id}:replay",
        json={"since": since, "outcomes": ["OUTCOME_DELIVERED"]},
    )
    [detail] = error(bad, 400, 3)["details"]
    assert detail["field_violations"][0]["field"] == "outcomes[0]"


@pytest.mark.gateway
def test_rest_test_event_and_rotation(rest_env: tuple[Env, str], rest: httpx.Client) -> None:
    env, _ = rest_env
    config, old = env.config("/rest-ping")
    resp = rest.post(f"/webhooks/configs/{config.id}:test", json={})
    assert resp.status_code == 200, resp.text
    log = resp.json()["log"]
    assert log["event_type"] == "webhook.ping" and log["outcome"] == "OUTCOME_DELIVERED"
    assert log["response_status_code"] == 200 and log["attempted_at"].endswith("Z")

    resp = rest.post(f"/webhooks/configs/{config.id}:rotate-secret", json={})
    assert resp.status_code == 200, resp.text
    rotated = resp.json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != old
    assert rotated["previous_secret_expires_at"].endswith("Z")
    bad = rest.post(f"/webhooks/configs/{config.id}:rotate-secret", json={"secret": "nope"})
    error(bad, 400, 3)

    env.admin.put_webhook_config(id=config.id, url=config.url, event_types=["*"], enabled=False)
    error(rest.post(f"/webhooks/configs/{config.id}:test", json={}), 400, 9)
    error(rest.post("/webhooks/configs/whc_nope:test"), 404, 5)
