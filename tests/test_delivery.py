"""Delivery end to end: the real server (API + worker in one loop, as
``webhooks serve``), real HTTP receivers on 127.0.0.1, SQLite and PostgreSQL.

Retry schedules are tiny (0.05 s) where real time is simplest; the policy's
timing is asserted with an injected clock (test_retry_policy.py and
``test_retry_waits_for_the_injected_clock`` below).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from tests.support.delivery_env import DeliveryEnv as Env
from tests.support.delivery_env import delivery_env
from tests.support.faults import wait_listening
from tests.support.payloads import example
from tests.support.polling import eventually_async
from tests.support.receiver import Reply, running_receiver
from tests.support.server import make_org_and_keys, running_server
from tests.support.server import test_settings as make_settings
from webhooks_client import AdminClient, DeliveryOutcome, InvalidArgumentError, PublisherClient
from webhooks_service.delivery.retry_policy import RetryPolicy
from webhooks_service.delivery.worker import DeliveryWorker
from webhooks_service.storage import db

FAST = {"retry_schedule": (0.05, 0.05, 0.05, 0.05)}
Out = DeliveryOutcome


@pytest.fixture
def env(request: pytest.FixtureRequest, database_url: str) -> Iterator[Env]:
    with delivery_env(database_url, getattr(request, "param", FAST)) as e:
        yield e


def test_signed_delivery_verifies_with_standardwebhooks(env: Env) -> None:
    config, secret = env.config("/hook")
    result = env.publish(id="evt_signed")
    (got,) = env.rx.wait_for(1, "/hook")
    assert Webhook(secret).verify(got.body, got.headers) is not None
    assert got.headers["webhook-id"] == "evt_signed"
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 10
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("webhooks-service/")
    body = json.loads(got.body)
    assert body["id"] == result.event_id and body["type"] == "reward.claimed"
    assert body["data"] == example("reward.claimed")  # canonical proto JSON
    (entry,) = env.wait_logs(1)
    assert entry.outcome == Out.DELIVERED
    assert entry.request_body.encode() == got.body
    assert (entry.attempt, entry.response_status_code, entry.config_id) == (1, 200, config.id)


def test_three_500s_then_success_on_the_fourth_attempt(env: Env) -> None:
    env.rx.program("/flaky", Reply(500), Reply(500), Reply(500, b"still down"), Reply(200))
    env.config("/flaky")
    env.publish(id="evt_flaky")
    got = env.rx.wait_for(4, "/flaky")
    assert {r.headers["webhook-id"] for r in got} == {"evt_flaky"}
    logs = env.wait_logs(4)
    oldest_first = list(reversed(logs))
    assert [e.attempt for e in oldest_first] == [1, 2, 3, 4]
    assert [e.outcome for e in oldest_first] == [Out.RETRY_SCHEDULED] * 3 + [Out.DELIVERED]
    assert [e.response_status_code for e in oldest_first] == [500, 500, 500, 200]
    assert oldest_first[2].response_body == "still down"
    assert all(e.next_attempt_at is not None for e in oldest_first[:3])
    assert oldest_first[3].next_attempt_at is None
    assert len({e.delivery_id for e in logs}) == 1
    env.settled()
    assert env.rx.count("/flaky") == 4


def test_400_is_one_attempt_and_a_final_failure(env: Env) -> None:
    env.rx.program("/bad", Reply(400, b"no\x00pe"))  # a NUL byte must not break the log
    env.config("/bad")
    env.publish()
    (entry,) = env.wait_logs(1)
    assert (entry.outcome, entry.response_status_code) == (Out.FAILED, 400)
    assert entry.response_body == "no\ufffdpe"
    env.settled()  # nothing pending: nothing more can happen
    assert env.rx.count("/bad") == 1 and len(env.logs()) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("env", [{"retry_schedule": (0.05, 0.05)}], indirect=True)
def test_connection_refused_is_retried_until_dead(env: Env) -> None:
    env.config("", url=f"http://127.0.0.1:{free_port()}/gone")
    env.publish()
    logs = list(reversed(env.wait_logs(3)))
    assert [e.outcome for e in logs] == [
        Out.RETRY_SCHEDULED,
        Out.RETRY_SCHEDULED,
        Out.DEAD,
    ]
    assert all(e.response_status_code == 0 and "connect" in e.error for e in logs)


@pytest.mark.parametrize(
    "env", [{"retry_schedule": (0.05,), "attempt_timeout": 0.3}], indirect=True
)
def test_timeout_is_retried(env: Env) -> None:
    env.rx.program("/slow", Reply(hang=True), Reply(200))
    env.config("/slow")
    env.publish()
    logs = list(reversed(env.wait_logs(2)))
    assert [e.outcome for e in logs] == [Out.RETRY_SCHEDULED, Out.DELIVERED]
    assert "timeout" in logs[0].error and logs[0].response_status_code == 0
    assert logs[0].duration_ms >= 250


def test_429_retry_after_is_respected(env: Env) -> None:
    env.rx.program("/busy", Reply(429, headers={"Retry-After": "1"}), Reply(200))
    env.config("/busy")
    env.publish()
    first, second = env.rx.wait_for(2, "/busy")
    assert second.at - first.at >= 1.0  # the schedule alone would retry after 0.05 s
    logs = list(reversed(env.wait_logs(2)))
    assert logs[0].outcome == Out.RETRY_SCHEDULED
    scheduled = logs[0].next_attempt_at
    attempted = logs[0].attempted_at
    assert scheduled is not None and attempted is not None
    assert scheduled - attempted >= timedelta(seconds=1)


def test_410_disables_the_endpoint(env: Env) -> None:
    env.rx.program("/gone", Reply(410))
    env.config("/gone")
    env.publish()
    (entry,) = env.wait_logs(1)
    assert entry.outcome == Out.FAILED
    (stored,) = env.admin.list_webhook_configs()
    assert not stored.enabled and "410" in stored.disabled_reason
    assert env.publish().deliveries == 0


def test_fan_out_reaches_exactly_the_matching_endpoints(env: Env) -> None:
    env.config("/all", ["*"])
    env.config("/rewards", ["reward.*"])
    env.config("/users", ["user.opted_in", "user.opted_out"])
    env.publish("reward.claimed", id="r1")
    env.publish("user.opted_out", id="u1")
    env.publish("action.completed", id="a1")
    env.wait_logs(5)
    seen = {
        p: {r.headers["webhook-id"] for r in env.rx.requests(p)}
        for p in ("/all", "/rewards", "/users")
    }
    assert seen == {"/all": {"r1", "u1", "a1"}, "/rewards": {"r1"}, "/users": {"u1"}}


def test_duplicate_publish_delivers_nothing_new(env: Env) -> None:
    env.config("/hook")
    assert not env.publish(id="once").duplicate
    env.rx.wait_for(1, "/hook")
    assert env.publish(id="once").duplicate
    env.publish(id="sentinel")
    env.wait_logs(2)
    ids = [r.headers["webhook-id"] for r in env.rx.requests("/hook")]
    assert sorted(ids) == ["once", "sentinel"]


@pytest.mark.parametrize("env", [{**FAST, "allowed_target_networks": ()}], indirect=True)
def test_loopback_target_is_refused_without_the_allow_list(env: Env) -> None:
    """Refused at PUT already (a literal address); names that resolve to loopback
    are refused at delivery (tests/test_target_guard_battery.py)."""
    with pytest.raises(InvalidArgumentError) as caught:
        env.config("/hook")
    assert [v.field for v in caught.value.field_violations] == ["url"]
    assert "loopback address" in caught.value.field_violations[0].description
    env.publish()
    env.settled()
    assert env.rx.count() == 0 and env.logs() == []


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class NoJitter(RetryPolicy):
    def backoff(self, attempt: int) -> float:
        return self.schedule[attempt - 1]


def test_retry_waits_for_the_injected_clock(database_url: str) -> None:
    """The worker retries when the clock reaches next_attempt_at, not before."""
    settings = make_settings(database_url, {"retry_schedule": (30.0, 60.0)})
    engine = db.create_engine(database_url)
    with running_receiver() as rx, running_server(database_url, engine=engine) as srv:
        rx.program("/h", Reply(503), Reply(200))
        org_id, keys = make_org_and_keys(engine)
        with AdminClient(srv.target, keys["all"]) as admin:
            admin.put_webhook_config(url=rx.url("/h"), event_types=["*"])
        with PublisherClient(srv.target, keys["events:publish"]) as pub:
            pub.publish_event(org_id, "reward.claimed", example("reward.claimed"))
        clock = FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1))

        async def scenario() -> None:
            worker = DeliveryWorker(
                settings, engine, clock=clock, policy=NoJitter(settings.retry_schedule)
            )
            stop, wake = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(worker.run(stop, wake))

            try:
                await steps(worker, wake, eventually_async)
            finally:
                stop.set()
                await task

        async def steps(worker: DeliveryWorker, wake: asyncio.Event, until: Any) -> None:
            start = clock.now
            await until(lambda: worker.attempts_recorded == 1, 5.0)
            with engine.connect() as conn:
                due = conn.execute(sa.text("SELECT next_attempt_at FROM deliveries")).scalar()
            assert due is not None
            if isinstance(due, str):
                due = datetime.fromisoformat(due)
            assert due.replace(tzinfo=UTC) == start + timedelta(seconds=30)
            clock.now = start + timedelta(seconds=29.9)
            claims = worker.claims

            def claimed_at_29_9() -> bool:  # a claim begun after the clock moved came back
                wake.set()
                return worker.claims >= claims + 2

            await until(claimed_at_29_9, 5.0)
            assert worker.idle and worker.attempts_recorded == 1
            assert rx.count("/h") == 1
            clock.now = start + timedelta(seconds=30)
            wake.set()
            await until(lambda: worker.attempts_recorded == 2, 5.0)
            assert rx.count("/h") == 2

        asyncio.run(scenario())
    engine.dispose()


def test_separate_worker_process_wakes_on_notify(database_url: str) -> None:
    """``webhooks worker`` in its own process: on PostgreSQL it is woken by
    LISTEN/NOTIFY (its poll interval here is 60 s), on SQLite it polls."""
    import os
    import signal
    import subprocess
    import sys

    postgres = not database_url.startswith("sqlite")
    env = {
        **os.environ,
        "WEBHOOKS_DATABASE_URL": database_url,
        "WEBHOOKS_METRICS_LISTEN": "127.0.0.1:0",
        "WEBHOOKS_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
        "WEBHOOKS_POLL_INTERVAL": "60" if postgres else "0.1",
        "WEBHOOKS_LOG_LEVEL": "WARNING",
    }
    webhooks = os.path.join(os.path.dirname(sys.executable), "webhooks")
    with running_receiver() as rx, running_server(database_url) as srv:  # API only
        org_id, keys = make_org_and_keys(srv.engine)
        with AdminClient(srv.target, keys["all"]) as admin:
            admin.put_webhook_config(url=rx.url("/w"), event_types=["*"])
        proc = subprocess.Popen([webhooks, "worker"], env=env, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            while line and "delivery worker running" not in line:  # e.g. the no-key warning
                line = proc.stderr.readline()
            assert "delivery worker running" in line
            wait_listening(database_url, 1)
            with PublisherClient(srv.target, keys["events:publish"]) as pub:
                pub.publish_event(org_id, "reward.claimed", example("reward.claimed"), id="cross")
            # On PostgreSQL the worker polls every 60 s: within 10 s, NOTIFY woke it.
            (got,) = rx.wait_for(1, "/w", timeout=10)
            assert got.headers["webhook-id"] == "cross"
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(20)
            if proc.stderr is not None:
                proc.stderr.close()
        assert code == 0


@pytest.mark.parametrize("env", [{"retry_schedule": (30.0,)}], indirect=True)
def test_redirects_are_not_followed_and_bodies_are_capped(env: Env) -> None:
    env.rx.program("/moved", Reply(302, headers={"Location": env.rx.url("/elsewhere")}))
    env.rx.program("/big", Reply(200, b"x" * 50_000))
    env.config("/moved", ["reward.*"])
    env.config("/big", ["user.*"])
    env.publish("reward.claimed")
    env.publish("user.opted_in")
    logs = {e.url.rsplit("/", 1)[1]: e for e in env.wait_logs(2)}
    assert logs["moved"].outcome == Out.RETRY_SCHEDULED
    assert logs["moved"].response_status_code == 302
    assert env.rx.count("/elsewhere") == 0
    assert logs["big"].outcome == Out.DELIVERED
    assert len(logs["big"].response_body) == 16384 and logs["big"].response_body_truncated


def test_shutdown_releases_unfinished_deliveries(database_url: str) -> None:
    """On stop, attempts still running after the grace period are cancelled and
    their deliveries handed back (due now, no claim token), not left leased."""
    overrides = {"shutdown_grace": 0.2, "max_in_flight_per_endpoint": 2}
    with running_receiver() as rx:
        rx.program("/hang", Reply(hang=True))
        with running_server(database_url, overrides, worker=True) as srv:
            env = Env(srv, rx)
            env.config("/hang")
            for i in range(5):  # 2 running, 3 waiting in the endpoint's backlog
                env.publish(id=f"h{i}")
            rx.wait_for(2, "/hang")
            env.admin.close()
            env.publisher.close()
            stopped_before = datetime.now(UTC)
        with srv.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT status, claim_token, next_attempt_at FROM deliveries")
            ).all()
            attempts = conn.execute(sa.text("SELECT count(*) FROM delivery_attempts")).scalar()
    assert len(rows) == 5 and attempts == 0
    for status, token, due in rows:
        assert status == "pending" and token is None
        due = datetime.fromisoformat(due) if isinstance(due, str) else due
        assert due.replace(tzinfo=UTC) <= stopped_before + timedelta(seconds=5)
