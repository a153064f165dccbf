"""Retention: old finished events go with their deliveries and attempts; the
rest stays. Runs on SQLite and PostgreSQL; time is injected (``now``/``clock``)
except for the CLI, which seeds rows relative to the real clock."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import _truncate_all
from tests.support.polling import eventually, eventually_async
from webhooks_service import cli
from webhooks_service.config import Settings
from webhooks_service.core import configs, orgs, retention
from webhooks_service.core.retention import PruneResult
from webhooks_service.storage import db
from webhooks_service.storage import retention as store
from webhooks_service.storage.models import Delivery, DeliveryAttempt, Event, utcnow

EVENTS = cast(sa.Table, Event.__table__)
DELIVERIES = cast(sa.Table, Delivery.__table__)
ATTEMPTS = cast(sa.Table, DeliveryAttempt.__table__)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
OUTCOME = {"delivered": "delivered", "failed": "failed", "dead": "dead"}


@dataclasses.dataclass(frozen=True)
class Tenant:
    org_id: str
    config_id: str


@pytest.fixture
def tenant(engine: Engine, database_url: str) -> Tenant:
    return make_tenant(engine, database_url)


def make_tenant(engine: Engine, database_url: str) -> Tenant:
    """An organisation with one webhook configuration (deliveries need both)."""
    org_id = orgs.create_org(engine, "Acme").id
    put = configs.put_config(
        engine,
        Settings(database_url=database_url),
        org_id,
        config_id="",
        url="https://example.com/hook",
        event_types=["*"],
        secret=None,
        enabled=True,
        description="",
    )
    return Tenant(org_id, put.config.id)


def seed_event(
    engine: Engine, tenant: Tenant, created_at: datetime, statuses: Sequence[str] = ("delivered",)
) -> str:
    """An event stored at ``created_at`` with one delivery per status, each with
    two attempts (a retry, then the outcome); returns the event id."""
    event_id = f"evt_{uuid.uuid4().hex[:12]}"
    with db.write_transaction(engine) as conn:
        pk = conn.execute(
            sa.insert(EVENTS)
            .values(
                organisation_id=tenant.org_id,
                event_id=event_id,
                event_type="reward.claimed",
                occurred_at=created_at,
                payload="{}",
                created_at=created_at,
            )
            .returning(EVENTS.c.pk)
        ).scalar_one()
        for status in statuses:
            delivery_id = conn.execute(
                sa.insert(DELIVERIES)
                .values(
                    organisation_id=tenant.org_id,
                    event_pk=pk,
                    config_id=tenant.config_id,
                    status=status,
                    attempts=2,
                    next_attempt_at=created_at + timedelta(minutes=1),
                    created_at=created_at,
                    updated_at=created_at,
                )
                .returning(DELIVERIES.c.id)
            ).scalar_one()
            for n, outcome in enumerate(
                ("retry_scheduled", OUTCOME.get(status, "retry_scheduled")), start=1
            ):
                conn.execute(
                    sa.insert(ATTEMPTS).values(
                        organisation_id=tenant.org_id,
                        delivery_id=delivery_id,
                        event_pk=pk,
                        event_id=event_id,
                        event_type="reward.claimed",
                        config_id=tenant.config_id,
                        attempt=n,
                        url="https://example.com/hook",
                        outcome=outcome,
                        attempted_at=created_at + timedelta(seconds=n),
                    )
                )
    return event_id


def counts(engine: Engine) -> PruneResult:
    with db.read_transaction(engine) as conn:
        return PruneResult(
            *(
                conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in (EVENTS, DELIVERIES, ATTEMPTS)
            )
        )


def kept_event_ids(engine: Engine) -> set[str]:
    with db.read_transaction(engine) as conn:
        return set(conn.execute(sa.select(EVENTS.c.event_id)).scalars())


def attempt_event_ids(engine: Engine) -> set[str]:
    with db.read_transaction(engine) as conn:
        return set(conn.execute(sa.select(ATTEMPTS.c.event_id)).scalars())


def settings_for(database_url: str, **overrides: object) -> Settings:
    base = Settings(database_url=database_url, prune_pause=0.0)
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def test_old_finished_events_go_recent_and_pending_stay(
    engine: Engine, database_url: str, tenant: Tenant
) -> None:
    day = timedelta(days=1)
    delivered = seed_event(engine, tenant, NOW - 40 * day)
    given_up = seed_event(engine, tenant, NOW - 31 * day, ["failed", "dead"])
    unmatched = seed_event(engine, tenant, NOW - 400 * day, [])  # no config matched it
    half_pending = seed_event(engine, tenant, NOW - 90 * day, ["delivered", "pending"])
    just_young = seed_event(engine, tenant, NOW - 30 * day + timedelta(minutes=1))
    recent = seed_event(engine, tenant, NOW - 2 * day, ["dead"])
    settings = settings_for(database_url)

    assert retention.prune(engine, settings, now=NOW, dry_run=True) == PruneResult(3, 3, 6)
    assert counts(engine) == PruneResult(6, 7, 14)  # a dry run deletes nothing

    assert retention.prune(engine, settings, now=NOW) == PruneResult(3, 3, 6)
    assert kept_event_ids(engine) == {half_pending, just_young, recent}
    assert attempt_event_ids(engine) == {half_pending, just_young, recent}
    assert counts(engine) == PruneResult(3, 4, 8)
    assert not kept_event_ids(engine) & {delivered, given_up, unmatched}

    # Nothing more to do; once the pending delivery finishes, its event goes too.
    assert retention.prune(engine, settings, now=NOW) == PruneResult()
    with db.write_transaction(engine) as conn:
        conn.execute(
            sa.update(DELIVERIES).where(DELIVERIES.c.status == "pending").values(status="dead")
        )
    assert retention.prune(engine, settings, now=NOW) == PruneResult(1, 2, 4)
    # A shorter retention reaches the younger events.
    assert retention.prune(engine, settings, now=NOW, older_than_days=1) == PruneResult(2, 2, 4)
    assert counts(engine) == PruneResult()


def test_batches_smaller_than_the_data_remove_everything(
    engine: Engine, database_url: str, tenant: Tenant
) -> None:
    old = NOW - timedelta(days=60)
    pending = []
    for i in range(23):
        # Pending events among the oldest ones: later batches must get past them.
        statuses = ["pending"] if i in (0, 1, 9) else ["delivered"]
        event_id = seed_event(engine, tenant, old + timedelta(minutes=i), statuses)
        if statuses == ["pending"]:
            pending.append(event_id)
    # Equal timestamps across a batch boundary.
    for _ in range(6):
        seed_event(engine, tenant, old + timedelta(hours=1))
    pauses: list[float] = []
    settings = settings_for(database_url, prune_batch_size=4, prune_pause=0.25)

    result = retention.prune(engine, settings, now=NOW, sleep=pauses.append)

    assert result == PruneResult(26, 26, 52)
    assert kept_event_ids(engine) == set(pending)
    assert len(pauses) >= 6 and set(pauses) == {0.25}  # paused between the batches


def test_batch_is_one_bounded_step(engine: Engine, database_url: str, tenant: Tenant) -> None:
    for i in range(5):
        seed_event(engine, tenant, NOW - timedelta(days=40, minutes=i))
    cutoff = NOW - timedelta(days=30)
    first = store.prune_batch(engine, cutoff, 3)
    assert (first.picked, first.result) == (3, PruneResult(3, 3, 6))
    second = store.prune_batch(engine, cutoff, 3, resume_from=first.resume_from)
    assert (second.picked, second.result) == (2, PruneResult(2, 2, 4))


@pytest.mark.postgres
def test_delivery_set_back_to_pending_during_a_batch_keeps_its_event(
    postgres_url: str, tenant_pg: Tenant
) -> None:
    """A retry that makes an old dead delivery pending while a batch runs wins:
    the batch re-reads the status under lock and keeps the event."""
    engine = db.create_engine(postgres_url)
    try:
        retried = seed_event(engine, tenant_pg, NOW - timedelta(days=40), ["dead"])
        other = seed_event(engine, tenant_pg, NOW - timedelta(days=40), ["dead"])
        with engine.connect() as retry:
            tx = retry.begin()
            retry.execute(
                sa.update(DELIVERIES)
                .where(
                    DELIVERIES.c.event_pk
                    == sa.select(EVENTS.c.pk).where(EVENTS.c.event_id == retried).scalar_subquery()
                )
                .values(status="pending")
            )
            outcome: list[store.Batch] = []
            pruner = threading.Thread(
                target=lambda: outcome.append(
                    store.prune_batch(engine, NOW - timedelta(days=30), 10)
                )
            )
            pruner.start()
            _wait_for_lock_waiter(engine)
            tx.commit()
            pruner.join(10)
        assert outcome and outcome[0].result == PruneResult(1, 1, 2)
        assert kept_event_ids(engine) == {retried}
        assert other not in kept_event_ids(engine)
    finally:
        engine.dispose()


def _wait_for_lock_waiter(engine: Engine) -> None:
    def waiting() -> int:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
            )

    eventually(waiting, 10, "the pruning batch to wait for the row lock")


@pytest.fixture
def tenant_pg(postgres_url: str) -> Tenant:
    """``tenant`` on the session's PostgreSQL database only, emptied first."""
    _truncate_all(postgres_url)
    engine = db.create_engine(postgres_url)
    try:
        return make_tenant(engine, postgres_url)
    finally:
        engine.dispose()


def test_periodic_task_prunes_and_stops_promptly(
    engine: Engine, database_url: str, tenant: Tenant
) -> None:
    old = seed_event(engine, tenant, NOW - timedelta(days=31))
    kept = seed_event(engine, tenant, NOW - timedelta(days=29))
    settings = settings_for(database_url, prune_batch_size=1, prune_pause=0.01)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            retention.run_retention(settings, engine, stop, interval=3600, clock=lambda: NOW)
        )
        await eventually_async(
            lambda: old not in kept_event_ids(engine), 10, "the periodic task to prune"
        )
        stop.set()
        await asyncio.wait_for(task, 5)  # not after the hour-long interval

    asyncio.run(scenario())
    assert kept_event_ids(engine) == {kept}


def test_periodic_task_off_when_retention_is_zero(
    engine: Engine, database_url: str, tenant: Tenant
) -> None:
    seed_event(engine, tenant, NOW - timedelta(days=3000))
    settings = settings_for(database_url, retention_days=0)

    async def scenario() -> None:
        await asyncio.wait_for(
            retention.run_retention(settings, engine, asyncio.Event(), clock=lambda: NOW), 5
        )

    asyncio.run(scenario())
    assert counts(engine) == PruneResult(1, 1, 2)


def test_prune_command(
    engine: Engine,
    database_url: str,
    tenant: Tenant,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WEBHOOKS_RETENTION_DAYS", raising=False)
    now = utcnow()
    seed_event(engine, tenant, now - timedelta(days=45), ["delivered", "dead"])
    seed_event(engine, tenant, now - timedelta(days=31))
    ten_days = seed_event(engine, tenant, now - timedelta(days=10))
    pending = seed_event(engine, tenant, now - timedelta(days=100), ["pending"])
    base = ["prune", "--database-url", database_url, "--prune-pause", "0"]

    assert cli.main([*base, "--dry-run"]) == 0
    assert capsys.readouterr().out == "would delete 2 events, 3 deliveries, 6 attempts\n"
    assert counts(engine) == PruneResult(4, 5, 10)

    assert cli.main(base) == 0
    assert capsys.readouterr().out == "deleted 2 events, 3 deliveries, 6 attempts\n"
    assert kept_event_ids(engine) == {ten_days, pending}

    assert cli.main([*base, "--older-than-days", "7", "--prune-batch-size", "1"]) == 0
    assert capsys.readouterr().out == "deleted 1 events, 1 deliveries, 2 attempts\n"
    assert kept_event_ids(engine) == {pending}

    assert cli.main([*base, "--retention-days", "0"]) == 0
    assert "retention is disabled" in capsys.readouterr().out
    assert kept_event_ids(engine) == {pending}

    assert cli.main([*base, "--prune-batch-size", "0"]) == 2
    assert "prune_batch_size" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*base, "--older-than-days", "0"])
    assert exit_info.value.code == 2
