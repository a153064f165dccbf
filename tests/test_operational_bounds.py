"""Operational webhooks are bounded by design (issue 26.1).

A hostile tenant's N endpoints all answering 400 and all subscribed to
``["*", "webhook.*"]``: one published event gave N failures, each a
``webhook.delivery_failed`` fanned out to the N - 1 others: N = 100 made
10,000 deliveries. Now failures are coalesced per endpoint per window, and an
organisation's operational deliveries per window are at most its endpoints:
one event causes at most 2 x N deliveries, 50 events (and their replay) at
most 50 x 2 x N, and nothing else is lost: every original delivery ends
failed, with its attempt logged.

Real server and worker, real receivers, both databases.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from tests.support.delivery_env import DeliveryEnv as Env
from tests.support.delivery_env import delivery_env
from tests.support.polling import eventually
from tests.support.receiver import Reply
from webhooks_service.core.endpoint_health import report_unreported_failures
from webhooks_service.storage import db
from webhooks_service.storage import operational as store
from webhooks_service.storage import operational_failures as failures
from webhooks_service.storage.models import Delivery, DeliveryAttempt, Event, utcnow

N = 100
ORIGINAL = "reward.claimed"


@pytest.fixture
def env(request: pytest.FixtureRequest, database_url: str) -> Iterator[Env]:
    with delivery_env(database_url, getattr(request, "param", {})) as e:
        yield e


def _deliveries(env: Env) -> dict[str, dict[str, int]]:
    """{"original" | "operational": {status: count}} of the organisation."""
    out: dict[str, dict[str, int]] = {"original": {}, "operational": {}}
    with env.srv.engine.connect() as conn:
        rows = conn.execute(
            sa.select(Event.event_type, Delivery.status, sa.func.count())
            .join(Event, Event.pk == Delivery.event_pk)
            .where(Delivery.organisation_id == env.org_id)
            .group_by(Event.event_type, Delivery.status)
        )
        for event_type, status, count in rows:
            kind = "operational" if event_type.startswith("webhook.") else "original"
            out[kind][status] = out[kind].get(status, 0) + count
    return out


def _settled(env: Env, originals: int) -> dict[str, dict[str, int]] | None:
    got = _deliveries(env)
    done = got["original"].get("failed", 0) == originals
    idle = "pending" not in got["original"] and "pending" not in got["operational"]
    return got if done and idle else None


def _count(env: Env, query: sa.Select[int]) -> int:
    with env.srv.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _logged_attempts(env: Env) -> int:
    """Original deliveries with at least one logged attempt."""
    return _count(
        env,
        sa.select(sa.func.count(sa.distinct(DeliveryAttempt.delivery_id)))
        .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
        .join(Event, Event.pk == Delivery.event_pk)
        .where(Delivery.organisation_id == env.org_id, Event.event_type == ORIGINAL),
    )


def _total(counts: dict[str, int]) -> int:
    return sum(counts.values())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_n_failing_endpoints_cost_o_n_not_n_squared(env: Env) -> None:
    ids = []
    for i in range(N):
        env.rx.program(f"/bad{i}", Reply(400, b"no"))
        ids.append(env.config(f"/bad{i}", ["*", "webhook.*"])[0].id)

    started = time.monotonic()
    env.publish(id="evt_one")
    one = eventually(lambda: _settled(env, N), 60, "the first event's deliveries to settle")
    print(f"\none event: {one}")
    assert _total(one["original"]) == N and one["original"] == {"failed": N}
    assert _total(one["operational"]) <= N  # before: N x (N - 1) = 9,900
    assert _total(one["original"]) + _total(one["operational"]) <= 2 * N
    assert _logged_attempts(env) == N
    requests_one = env.rx.count()
    assert requests_one <= 2 * N

    for i in range(50):
        env.publish(id=f"evt_many_{i}")
    many = eventually(lambda: _settled(env, 51 * N), 120, "50 events to settle")
    print(f"50 more events: {many} ({time.monotonic() - started:.1f} s)")
    added = _total(many["original"]) + _total(many["operational"]) - 2 * N
    assert _total(many["original"]) == 51 * N
    assert added <= 50 * 2 * N
    assert _total(many["operational"]) <= 2 * N  # one window's budget, twice at most
    assert _logged_attempts(env) == 51 * N

    # a replay of those 50 events to every endpoint
    since = utcnow() - timedelta(hours=1)
    attempts_before = _attempts(env)
    replayed = sum(env.admin.replay_deliveries(config_id, since=since) for config_id in ids)
    assert replayed >= 51 * N  # the originals (and the operational deliveries that failed)
    after = eventually(
        lambda: _settled(env, 51 * N) if _attempts(env) >= attempts_before + replayed else None,
        180,
        "the replay to settle",
    )
    print(f"after the replay: {after} ({time.monotonic() - started:.1f} s)")
    assert _total(after["operational"]) - _total(many["operational"]) <= 50 * N
    assert after["original"] == {"failed": 51 * N}  # every original ends failed
    with env.srv.engine.connect() as conn:
        totals = store.operational_totals(conn, env.org_id)
    print(f"operational totals: {totals}")
    assert totals["suppressed"] > 0 and totals["coalesced"] > 0
    assert totals["sent"] == _operational_events(env)


def _attempts(env: Env) -> int:
    """Attempts logged for the organisation's deliveries, of any event type."""
    return _count(
        env,
        sa.select(sa.func.count())
        .select_from(DeliveryAttempt)
        .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
        .where(Delivery.organisation_id == env.org_id),
    )


def _operational_events(env: Env) -> int:
    return _count(
        env,
        sa.select(sa.func.count())
        .select_from(Event)
        .where(Event.organisation_id == env.org_id, Event.event_type.like("webhook.%")),
    )


def _bad_and_ops(env: Env) -> tuple[str, str, str]:
    """(id of an endpoint answering 400, id of one subscribed to its failures, its secret)."""
    env.rx.program("/bad", Reply(400))
    bad, _ = env.config("/bad", ["reward.*"])
    ops, secret = env.config("/ops", ["webhook.delivery_failed"])
    return bad.id, ops.id, secret


@pytest.mark.parametrize("env", [{"operational_window": 30.0}], indirect=True)
def test_failures_of_a_window_are_reported_together(env: Env) -> None:
    bad_id, ops_id, secret = _bad_and_ops(env)
    env.publish(id="evt_1")
    [first] = env.rx.wait_for(1, "/ops")
    data = Webhook(secret).verify(first.body, first.headers)["data"]
    assert data["failed_deliveries"] == 1 and data["event_id"] == "evt_1"
    assert data["first_delivery_id"] == data["last_delivery_id"] == data["delivery_id"]
    for i in (2, 3, 4):  # inside the window: counted, not sent
        env.publish(id=f"evt_{i}")
    env.wait_logs(4, config_id=bad_id)
    assert env.rx.count("/ops") == 1
    # the sweep reports them once the window is over (moved 31 s into the past)
    with db.write_transaction(env.srv.engine) as conn:
        reported = conn.execute(sa.select(failures._F.c.reported_at)).scalar_one()
        conn.execute(sa.update(failures._F).values(reported_at=reported - timedelta(seconds=31)))
    later = utcnow()
    assert report_unreported_failures(env.srv.engine, env.srv.settings, now=later) == 1
    requests = env.rx.wait_for(2, "/ops")
    second = Webhook(secret).verify(requests[1].body, requests[1].headers)["data"]
    logs = {e.event_id: e.delivery_id for e in env.logs(config_id=bad_id)}
    assert second["failed_deliveries"] == 3
    assert second["first_delivery_id"] == logs["evt_2"]
    assert second["last_delivery_id"] == second["delivery_id"] == logs["evt_4"]
    assert second["event_id"] == "evt_4" and second["config_id"] == bad_id
    assert second["first_failed_at"] <= second["last_failed_at"]
    # nothing left to report, and no report twice
    assert report_unreported_failures(env.srv.engine, env.srv.settings, now=later) == 0
    with env.srv.engine.connect() as conn:
        totals = store.operational_totals(conn, env.org_id)
    assert totals == {"sent": 2, "coalesced": 3, "suppressed": 0}
    assert ops_id != bad_id
    assert json.loads(requests[1].body)["type"] == "webhook.delivery_failed"


@pytest.mark.parametrize("env", [{"operational_window": 3.0}], indirect=True)
def test_the_next_failure_after_the_window_carries_the_count(env: Env) -> None:
    bad_id, _, secret = _bad_and_ops(env)
    env.publish(id="evt_a")
    env.rx.wait_for(1, "/ops")
    env.publish(id="evt_b")
    env.wait_logs(2, config_id=bad_id)
    assert env.rx.count("/ops") == 1
    eventually(lambda: _window_over(env), 10, "the window to end")
    env.publish(id="evt_c")
    requests = env.rx.wait_for(2, "/ops")
    data = Webhook(secret).verify(requests[1].body, requests[1].headers)["data"]
    assert data["failed_deliveries"] == 2 and data["event_id"] == "evt_c"


def _window_over(env: Env) -> bool:
    with db.write_transaction(env.srv.engine) as conn:
        row = conn.execute(sa.select(failures._F.c.reported_at)).first()
    return row is not None and utcnow() - row[0] > timedelta(seconds=3.05)


def test_the_process_counts_operational_events_by_result() -> None:
    from webhooks_service.observability.metrics import DeliveryObserver

    observer = DeliveryObserver()
    observer.operational(sent=1, coalesced=3, suppressed=99)
    registry = observer.metrics.registry
    for result, expected in (("sent", 1), ("coalesced", 3), ("suppressed", 99)):
        value = registry.get_sample_value("webhooks_operational_events_total", {"result": result})
        assert value == expected
