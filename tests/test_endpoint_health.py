"""Endpoint health: per-config statistics in ListWebhookConfigs, auto-disable.

The counters are written by ``finish_batch`` (the worker's hot path); the
auto-disable sweep runs with an injected ``now``, so "5 days of failures"
takes no time. Both run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Receiver, Reply, running_receiver
from tests.support.server import make_org_and_keys, running_server
from tests.support.server import test_settings as make_settings
from webhooks_client import AdminClient, PublisherClient, WebhookConfig
from webhooks_service.config import Settings
from webhooks_service.config_values import parse_duration
from webhooks_service.core import configs
from webhooks_service.core.endpoint_health import disable_failing_endpoints
from webhooks_service.delivery.attempt import NOT_ATTEMPTED_ERROR
from webhooks_service.domain import FinishedAttempt, Outcome
from webhooks_service.storage import queue

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)


class Endpoints:
    """An organisation with configurations, and attempts recorded through finish_batch."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.org_id, _ = make_org_and_keys(engine)

    def config(self, path: str = "/hook") -> str:
        result = configs.put_config(
            self.engine,
            self.settings,
            self.org_id,
            config_id="",
            url=f"https://example.com{path}",
            event_types=["*"],
            secret=None,
            enabled=None,
            description="",
            clock=lambda: T0 - DAY,
        )
        return result.config.id

    def attempt(
        self,
        config_id: str,
        at: datetime,
        status: int = 500,
        error: str = "",
        attempted: bool = True,
    ) -> None:
        """One recorded attempt (its delivery is not ours: only the health counts)."""
        ok = 200 <= status < 300
        finished = FinishedAttempt(
            delivery_id=0,
            claim_token="-",
            attempt=1,
            organisation_id=self.org_id,
            config_id=config_id,
            event_pk=0,
            event_id="evt",
            event_type="reward.claimed",
            url="https://example.com/hook",
            outcome=Outcome.DELIVERED if ok else Outcome.RETRY_SCHEDULED,
            attempted_at=at,
            next_attempt_at=None if ok else at + timedelta(seconds=5),
            response_status_code=0 if error else status,
            error=error,
            attempted=attempted,
        )
        queue.finish_batch(self.engine, [finished], now=at)

    def get(self, config_id: str) -> configs.ConfigRow:
        rows, _ = configs.list_configs(self.engine, self.org_id)
        return next(r for r in rows if r.id == config_id)

    def sweep(self, now: datetime, **overrides: object) -> list[str]:
        settings = dataclasses.replace(self.settings, **overrides)  # type: ignore[arg-type]
        return disable_failing_endpoints(self.engine, settings, now=now)


@pytest.fixture
def endpoints(engine: Engine, database_url: str) -> Endpoints:
    return Endpoints(engine, make_settings(database_url))


def test_counters_last_success_and_error(endpoints: Endpoints) -> None:
    cid = endpoints.config()
    endpoints.attempt(cid, T0, 200)
    endpoints.attempt(cid, T0 + timedelta(minutes=1), 503)
    endpoints.attempt(cid, T0 + timedelta(minutes=2), error="connect failed: refused")
    h = endpoints.get(cid).health
    assert (h.attempts, h.successes, h.failures) == (3, 1, 2)
    assert h.last_success_at == T0
    assert h.last_error == "connect failed: refused"
    assert h.last_error_at == T0 + timedelta(minutes=2)
    assert h.failing_since == T0 + timedelta(minutes=1)  # first failure after the success
    endpoints.attempt(cid, T0 + timedelta(minutes=3), 204)
    h = endpoints.get(cid).health
    assert (h.attempts, h.successes, h.failures) == (4, 2, 2)
    assert h.failing_since is None and h.last_success_at == T0 + timedelta(minutes=3)
    assert h.last_error == "connect failed: refused"  # kept: the latest error


def test_one_batch_folds_many_attempts_per_endpoint(endpoints: Endpoints) -> None:
    a, b = endpoints.config("/a"), endpoints.config("/b")

    def fa(cid: str, minute: int, status: int) -> FinishedAttempt:
        return FinishedAttempt(
            0, "-", 1, endpoints.org_id, cid, 0, "e", "reward.claimed", "u",
            Outcome.DELIVERED if status == 200 else Outcome.FAILED, T0 + timedelta(minutes=minute),
            response_status_code=status,
        )  # fmt: skip

    batch = [fa(a, 1, 500), fa(a, 2, 200), fa(a, 3, 400), fa(a, 4, 500), fa(b, 1, 200)]
    queue.finish_batch(endpoints.engine, batch, now=T0 + timedelta(minutes=5))
    ha, hb = endpoints.get(a).health, endpoints.get(b).health
    assert (ha.attempts, ha.successes, ha.failures) == (4, 1, 3)
    assert ha.failing_since == T0 + timedelta(minutes=3)  # the run after the success
    assert ha.last_error == "HTTP 500" and ha.last_success_at == T0 + timedelta(minutes=2)
    assert (hb.attempts, hb.successes, hb.failures, hb.failing_since) == (1, 1, 0, None)


def test_disabled_endpoint_deliveries_are_not_attempts(endpoints: Endpoints) -> None:
    cid = endpoints.config()
    endpoints.attempt(cid, T0, error=NOT_ATTEMPTED_ERROR, attempted=False)
    h = endpoints.get(cid).health
    assert (h.attempts, h.failures, h.failing_since, h.last_error) == (0, 0, None, "")


def test_auto_disable_after_the_period_of_failures(endpoints: Endpoints) -> None:
    always = endpoints.config("/always-failing")
    quiet = endpoints.config("/failed-once-then-no-traffic")
    recovered = endpoints.config("/recovered-in-between")
    for cid in (always, quiet, recovered):
        endpoints.attempt(cid, T0)
    endpoints.attempt(recovered, T0 + 2 * DAY, 200)
    endpoints.attempt(recovered, T0 + 3 * DAY)
    for cid in (always, recovered):
        endpoints.attempt(cid, T0 + 5 * DAY + timedelta(seconds=1), 502)

    assert endpoints.sweep(T0 + 5 * DAY - timedelta(seconds=1)) == []  # not yet
    assert endpoints.sweep(T0 + 6 * DAY, endpoint_failure_disable_after=0.0) == []  # feature off
    assert endpoints.sweep(T0 + 5 * DAY + timedelta(seconds=2)) == [always]
    row = endpoints.get(always)
    assert not row.enabled
    assert row.disabled_reason.startswith("every delivery attempt failed for 5 days (since ")
    assert "last error: HTTP 502" in row.disabled_reason
    assert endpoints.get(quiet).enabled and endpoints.get(recovered).enabled
    assert endpoints.sweep(T0 + 10 * DAY) == []  # quiet: no failure at the end of a period

    # Re-enabling through Put clears the reason and the failure run.
    put = configs.put_config(
        endpoints.engine,
        endpoints.settings,
        endpoints.org_id,
        config_id=always,
        url=row.url,
        event_types=["*"],
        secret=None,
        enabled=True,
        description="",
    )
    assert put.config.enabled and put.config.disabled_reason == ""
    assert put.config.health.failing_since is None
    row = endpoints.get(always)
    assert row.enabled and row.disabled_reason == "" and row.health.failing_since is None
    assert row.health.failures == 2  # the statistics are history, not reset
    assert endpoints.sweep(T0 + 20 * DAY) == []


def test_disable_after_is_a_duration_setting() -> None:
    assert Settings().endpoint_failure_disable_after == 5 * 86400
    assert [parse_duration(t) for t in ("12h", "30m", "45s", "90", "0")] == [
        43200,
        1800,
        45,
        90,
        0,
    ]
    assert Settings.load(env={"WEBHOOKS_ENDPOINT_FAILURE_DISABLE_AFTER": "2d"}) == Settings(
        endpoint_failure_disable_after=172800.0
    )


# -- through the API, with real deliveries -------------------------------------


@pytest.fixture
def served(database_url: str) -> Iterator[tuple[AdminClient, PublisherClient, str, Receiver]]:
    overrides = {"retry_schedule": (0.05,)}
    with running_receiver() as rx, running_server(database_url, overrides, worker=True) as srv:
        org_id, keys = make_org_and_keys(srv.engine)
        with (
            AdminClient(srv.target, keys["all"]) as admin,
            PublisherClient(srv.target, keys["events:publish"]) as pub,
        ):
            yield admin, pub, org_id, rx


def _wait_health(admin: AdminClient, config_id: str, attempts: int) -> WebhookConfig:
    def counted() -> WebhookConfig | None:
        config = next(c for c in admin.list_webhook_configs() if c.id == config_id)
        return config if config.health.attempts >= attempts else None

    return eventually(counted, what=f"{attempts} attempts counted")


def test_list_shows_health_of_real_deliveries(
    served: tuple[AdminClient, PublisherClient, str, Receiver],
) -> None:
    admin, pub, org_id, rx = served
    rx.program("/flaky", Reply(200), Reply(200), Reply(500), Reply(200))
    rx.program("/gone", Reply(410))
    flaky = admin.put_webhook_config(url=rx.url("/flaky"), event_types=["reward.*"]).config
    gone = admin.put_webhook_config(url=rx.url("/gone"), event_types=["user.*"]).config
    assert flaky.health.last_success_at is None and flaky.health.attempts == 0
    for i in range(3):
        pub.publish_event(org_id, "reward.claimed", example("reward.claimed"), id=f"r{i}")
    config = _wait_health(admin, flaky.id, 4)
    h = config.health
    assert (h.attempts, h.successes, h.failures) == (4, 3, 1)
    assert h.last_error == "HTTP 500" and h.last_error_at is not None
    assert h.last_success_at is not None and h.failing_since is None

    pub.publish_event(org_id, "user.authenticated", example("user.authenticated"), id="g1")
    config = _wait_health(admin, gone.id, 1)
    assert not config.enabled and "410" in config.disabled_reason  # at once
    assert config.health.failures == 1 and config.health.failing_since is not None
    again = admin.put_webhook_config(
        id=gone.id, url=gone.url, event_types=["user.*"], enabled=True
    ).config
    assert again.enabled and again.disabled_reason == ""
    assert again.health.failing_since is None and again.health.failures == 1
