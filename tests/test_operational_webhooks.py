"""Operational webhooks: ``webhook.endpoint_disabled`` and ``webhook.delivery_failed``.

Real server with its worker, real receivers, both databases. Every operational
delivery is verified with the ``standardwebhooks`` library, like a receiver
would.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.delivery_env import DeliveryEnv as Env
from tests.support.delivery_env import delivery_env
from tests.support.receiver import Received, Reply
from webhooks_client import InvalidArgumentError
from webhooks_service.core.endpoint_health import disable_failing_endpoints
from webhooks_service.storage.models import utcnow

FAST = {"retry_schedule": (0.05, 0.05)}  # three attempts, then dead
DISABLED_KEYS = {"config_id", "url", "reason", "failing_since", "disabled_at"}
FAILED_KEYS = {
    "config_id",
    "delivery_id",
    "event_id",
    "event_type",
    "outcome",
    "attempts",
    "last_status_code",
    "last_error",
    # coalescing (issue 26.1): how many since the previous report, first and last
    "failed_deliveries",
    "first_delivery_id",
    "last_delivery_id",
    "first_failed_at",
    "last_failed_at",
}


@pytest.fixture
def env(request: pytest.FixtureRequest, database_url: str) -> Iterator[Env]:
    with delivery_env(database_url, getattr(request, "param", FAST)) as e:
        yield e


def verified(secret: str, request: Received) -> dict[str, Any]:
    """The payload of a delivery, after the standardwebhooks library verified it."""
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    assert payload == json.loads(request.body)
    return payload


def operational(rx_requests: list[Received], event_type: str) -> list[Received]:
    return [r for r in rx_requests if json.loads(r.body)["type"] == event_type]


def settle(env: Env) -> None:
    """Until anything extra (what must not arrive) would have been delivered: nothing
    pending in the queue (operational events are queued in the transaction that
    records the attempt they are about, or the admin change) and the worker holds
    nothing. The service's own state, not a sleep."""
    env.settled()
    env.srv.quiet()


def test_a_410_sends_exactly_one_endpoint_disabled(env: Env) -> None:
    env.rx.program("/gone", Reply(410))
    gone, _ = env.config("/gone", ["*", "webhook.*"])
    ops, ops_secret = env.config("/ops", ["webhook.endpoint_disabled"])
    everything, _ = env.config("/everything", ["*"])
    for i in range(3):  # several deliveries answered 410 in flight together
        env.publish(id=f"evt_{i}")

    [request] = env.rx.wait_for(1, "/ops")
    payload = verified(ops_secret, request)
    assert payload["type"] == "webhook.endpoint_disabled"
    assert request.headers["webhook-id"] == payload["id"]
    data = payload["data"]
    assert set(data) == DISABLED_KEYS
    assert data["config_id"] == gone.id and data["url"] == env.rx.url("/gone")
    assert data["reason"] == "ENDPOINT_DISABLED_REASON_GONE"
    assert data["disabled_at"].endswith("Z") and data["failing_since"].endswith("Z")
    env.rx.wait_for(3, "/everything")
    settle(env)
    assert env.rx.count("/ops") == 1
    # "*" does not include operational events; never to the config it is about
    assert operational(env.rx.requests("/everything"), "webhook.endpoint_disabled") == []
    assert all(json.loads(r.body)["type"] == "reward.claimed" for r in env.rx.requests("/gone"))
    # logged like any event
    [entry] = env.wait_logs(1, config_id=ops.id, event_type="webhook.endpoint_disabled")
    assert entry.event_id == payload["id"] and entry.response_status_code == 200
    assert everything.id != ops.id


def test_a_400_sends_one_delivery_failed_and_never_loops(env: Env) -> None:
    env.rx.program("/bad", Reply(400, b"nope"))
    env.rx.program("/ops", Reply(400))  # the ops endpoint fails its own deliveries too
    bad, _ = env.config("/bad", ["reward.*", "webhook.*"])
    ops, ops_secret = env.config("/ops", ["webhook.*"])
    env.publish(id="evt_bad")

    [request] = env.rx.wait_for(1, "/ops")
    payload = verified(ops_secret, request)
    assert payload["type"] == "webhook.delivery_failed"
    data = payload["data"]
    assert set(data) == FAILED_KEYS
    [attempt] = env.wait_logs(1, config_id=bad.id)
    assert data == {
        "config_id": bad.id,
        "delivery_id": attempt.delivery_id,
        "event_id": "evt_bad",
        "event_type": "reward.claimed",
        "outcome": "OUTCOME_FAILED",
        "attempts": 1,
        "last_status_code": 400,
        "last_error": "HTTP 400",
        "failed_deliveries": 1,
        "first_delivery_id": attempt.delivery_id,
        "last_delivery_id": attempt.delivery_id,
        "first_failed_at": data["first_failed_at"],
        "last_failed_at": data["first_failed_at"],
    }
    assert data["first_failed_at"].endswith("Z")
    settle(env)
    # the failed operational delivery to /ops reported nothing (no loop), and the
    # event about /bad never went to /bad itself
    assert env.rx.count("/ops") == 1
    assert [json.loads(r.body)["type"] for r in env.rx.requests("/bad")] == ["reward.claimed"]
    assert len(env.logs(event_type="webhook.delivery_failed")) == 1
    assert ops.id != bad.id


def test_a_dead_delivery_is_reported_with_its_attempts(env: Env) -> None:
    env.rx.program("/down", Reply(503))
    env.config("/down", ["reward.*"])
    _, ops_secret = env.config("/ops", ["webhook.delivery_failed"])
    env.publish(id="evt_dead")
    [request] = env.rx.wait_for(1, "/ops")
    data = verified(ops_secret, request)["data"]
    assert data["outcome"] == "OUTCOME_DEAD" and data["attempts"] == 3
    assert data["last_status_code"] == 503 and data["last_error"] == "HTTP 503"


def test_admin_and_sweep_disabling_are_reported(env: Env) -> None:
    env.rx.program("/down", Reply(503))
    down, _ = env.config("/down", ["reward.*"])
    _, ops_secret = env.config("/ops", ["webhook.endpoint_disabled"])
    env.publish(id="evt_down")
    env.wait_logs(1, config_id=down.id, outcome="dead")
    # every attempt failed for longer than the (tiny) period: the sweep disables it
    settings = dataclasses.replace(env.srv.settings, endpoint_failure_disable_after=0.05)
    assert disable_failing_endpoints(env.srv.engine, settings, now=utcnow()) == [down.id]
    [request] = env.rx.wait_for(1, "/ops")
    data = verified(ops_secret, request)["data"]
    assert data["reason"] == "ENDPOINT_DISABLED_REASON_FAILING"
    assert data["config_id"] == down.id and "failing_since" in data

    # re-enabled, then disabled by an admin
    env.admin.put_webhook_config(id=down.id, url=down.url, event_types=["reward.*"], enabled=True)
    env.admin.put_webhook_config(id=down.id, url=down.url, event_types=["reward.*"], enabled=False)
    requests = env.rx.wait_for(2, "/ops")
    data = verified(ops_secret, requests[1])["data"]
    assert data["reason"] == "ENDPOINT_DISABLED_REASON_ADMIN"
    assert "failing_since" not in data  # the re-enable cleared the failure run
    # putting a disabled config again is not a new disabling
    env.admin.put_webhook_config(id=down.id, url=down.url, event_types=["reward.*"], enabled=False)
    settle(env)
    assert env.rx.count("/ops") == 2


def test_operational_types_cannot_be_published(env: Env) -> None:
    for event_type in ("webhook.endpoint_disabled", "webhook.delivery_failed"):
        with pytest.raises(InvalidArgumentError) as err:
            env.publish(event_type)
        assert err.value.field_violations[0].field == "event.type"
        assert "operational" in err.value.field_violations[0].description


def test_operational_types_are_in_the_catalog_and_subscribable(env: Env) -> None:
    listed = env.admin.list_event_types(category="webhook")
    # webhook.ping and webhook.verification are listed too (receivers get them and
    # need their schemas), not subscribable
    assert [t.name for t in listed] == [
        "webhook.endpoint_disabled",
        "webhook.delivery_failed",
        "webhook.ping",
        "webhook.verification",
    ]
    for pattern in (["webhook.*"], ["webhook.endpoint_disabled", "webhook.delivery_failed"]):
        assert env.admin.put_webhook_config(url=env.rx.url("/o"), event_types=pattern).created
    for reserved in ("webhook.ping", "webhook.verification"):
        with pytest.raises(InvalidArgumentError):
            env.admin.put_webhook_config(url=env.rx.url("/o"), event_types=[reserved])


def test_a_failing_operational_hook_never_costs_the_attempt_records(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webhooks_service.storage import operational as store

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("injected: cannot queue operational events")

    monkeypatch.setattr(store, "insert_operational", broken)
    env.rx.program("/bad", Reply(400))
    bad, _ = env.config("/bad", ["reward.*"])
    env.config("/ops", ["webhook.*"])
    env.publish(id="evt_kept")
    [entry] = env.wait_logs(1, config_id=bad.id, outcome="failed")
    assert entry.event_id == "evt_kept" and entry.response_status_code == 400
    settle(env)
    assert env.rx.count("/ops") == 0
