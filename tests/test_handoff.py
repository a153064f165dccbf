"""Hand-off at publish: a delivery published in the worker's own process is
inserted already claimed and attempted without a claim query; the worker takes
what it can start and a prefetch that waits in it, and what is beyond both
stays in the queue unclaimed; a handed-over delivery whose
process dies is claimed again when its lease runs out. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.faults import wait_listening
from tests.support.payloads import example
from tests.support.polling import eventually, eventually_async
from tests.support.receiver import Reply, running_receiver
from tests.support.server import make_org_and_keys, running_server
from tests.support.server import test_settings as make_settings
from webhooks_client import PublisherClient
from webhooks_service.core import configs, publishing
from webhooks_service.delivery import worker as worker_module
from webhooks_service.delivery.worker import DeliveryWorker, LocalWorker
from webhooks_service.domain import ClaimedDelivery, Destination
from webhooks_service.errors import NotFound
from webhooks_service.storage import db, queue
from webhooks_service.storage.events import NOTIFY_CHANNEL, NewEvent
from webhooks_service.storage.models import utcnow


def add_config(engine: Engine, org: str, url: str) -> str:
    settings = make_settings(engine.url.render_as_string(hide_password=False))
    return configs.put_config(
        engine,
        settings,
        org,
        config_id="",
        url=url,
        event_types=["*"],
        secret=None,
        enabled=None,
        description="",
    ).config.id


def claim_tokens(engine: Engine) -> list[str | None]:
    with engine.connect() as conn:
        return list(
            conn.execute(sa.text("SELECT claim_token FROM deliveries ORDER BY id")).scalars()
        )


def test_published_delivery_is_attempted_without_a_claim_query(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    claims: list[int] = []
    real_claim = queue.claim_due

    def counting_claim(*args: Any, **kwargs: Any) -> list[ClaimedDelivery]:
        claims.append(1)
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(queue, "claim_due", counting_claim)
    with (
        running_receiver() as rx,
        running_server(database_url, {"poll_interval": 30.0}, worker=True) as srv,
    ):
        org, keys = make_org_and_keys(srv.engine)
        add_config(srv.engine, org, rx.url("/hook"))
        # Let the worker's start-up claims (and PostgreSQL's LISTEN wake-up) pass:
        # until the loop waits, no claim begun and not done, none asked for.
        wait_listening(database_url, 1)
        srv.claimed_after()
        worker = srv.worker

        def waiting() -> bool:
            asked = srv.wakeup.is_set() or worker.wake.asked
            return not asked and len(claims) == worker.claims

        eventually(waiting, 10, "the claim loop to wait")
        seen = len(claims)
        with PublisherClient(srv.target, keys["events:publish"]) as publisher:
            for i in range(3):
                publisher.publish_event(
                    org, "reward.claimed", example("reward.claimed"), id=f"evt_{i}"
                )
        rx.wait_for(3, path="/hook")
        assert len(claims) == seen  # no claim query, no wake-up: handed over
        ids = sorted(r.headers["webhook-id"] for r in rx.requests("/hook"))
        assert ids == ["evt_0", "evt_1", "evt_2"]


class TakeSome:
    """A HandOff that takes the deliveries to the given URLs' destinations."""

    lease_seconds = 30.0

    def __init__(self, *urls: str) -> None:
        self.destinations = {Destination.of(u) for u in urls}
        self.claimed: list[ClaimedDelivery] | None = None

    def take(self, destination: Destination) -> bool:
        return destination in self.destinations

    def handed(self, claimed: Sequence[ClaimedDelivery]) -> None:
        self.claimed = list(claimed)

    async def settle(self) -> int:
        return len(self.claimed or ())


def test_handed_over_delivery_is_leased_and_recovered_after_a_crash(engine: Engine) -> None:
    org, _ = make_org_and_keys(engine)
    taken = add_config(engine, org, "http://127.0.0.1:9/taken")
    add_config(engine, org, "http://127.0.0.1:10/left")
    now = utcnow()
    handoff = TakeSome("http://127.0.0.1:9/")
    payload = '{"id":"evt_1"}'
    [stored] = publishing.store_events(
        engine,
        [NewEvent(org, "evt_1", "reward.claimed", now, payload)],
        now=now,
        handoff=handoff,
    )
    assert stored.deliveries == 2
    assert handoff.claimed is not None and len(handoff.claimed) == 1
    [mine] = handoff.claimed
    assert (mine.config_id, mine.attempt, mine.payload) == (taken, 1, payload)
    assert mine.url == "http://127.0.0.1:9/taken"
    assert mine.lease_until == now + timedelta(seconds=30)
    assert sorted(claim_tokens(engine), key=str) == sorted([mine.claim_token, None], key=str)

    # Another worker finds only the delivery left unclaimed ...
    others = queue.claim_due(engine, now=now, lease_seconds=600, limit=10)
    assert [d.config_id for d in others] != [taken] and len(others) == 1
    # ... and, the publishing process having died, the handed-over one once its lease ran out.
    later = queue.claim_due(engine, now=now + timedelta(seconds=31), lease_seconds=30, limit=10)
    assert [(d.id, d.config_id, d.attempt) for d in later] == [(mine.id, taken, 1)]


def test_a_failed_publish_hands_nothing_over(engine: Engine) -> None:
    handoff = TakeSome()
    with pytest.raises(NotFound):
        publishing.store_events(
            engine,
            [NewEvent("org_missing", "evt_1", "reward.claimed", utcnow(), "{}")],
            now=utcnow(),
            handoff=handoff,
        )
    assert handoff.claimed is None


@pytest.mark.parametrize(("prefetch", "unclaimed"), [(500, 0), (1, 1), (0, 2)])
def test_worker_takes_what_it_can_start_and_its_prefetch_and_leaves_the_rest_unclaimed(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, prefetch: int, unclaimed: int
) -> None:
    monkeypatch.setattr(worker_module, "HANDOFF_PREFETCH", prefetch)
    settings = make_settings(
        engine.url.render_as_string(hide_password=False),
        {
            "max_in_flight": 3,
            "max_in_flight_per_endpoint": 2,
            "poll_interval": 30.0,
            "shutdown_grace": 0.1,
        },
    )
    org, _ = make_org_and_keys(engine)
    with running_receiver() as rx:
        rx.program("/a", Reply(delay=2.0))
        rx.program("/b", Reply(delay=2.0))
        add_config(engine, org, rx.url("/a"))
        add_config(engine, org, rx.url("/b"))

        async def scenario() -> tuple[int, int]:
            local = LocalWorker()
            worker = DeliveryWorker(settings, engine)
            local.worker = worker
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop, local.wakeup))
            probe = await eventually_async(lambda: local.lend(org), 10, "the worker to run")
            assert await probe.settle() == 0  # an unused lending gives its slots back
            items = [
                publishing.EventInput(org, f"evt_{i}", "reward.claimed", None, example())
                for i in range(2)
            ]
            await publishing.publish_events(engine, settings, org, items, lend=local.lend)
            in_flight = worker.in_flight
            unclaimed = claim_tokens(engine).count(None)
            stop.set()
            await task
            return in_flight, unclaimed

        # 4 deliveries (2 events x 2 endpoints on one receiver, so one destination):
        # 3 global slots, 2 per destination; the other 2 wait in the worker as far
        # as its prefetch goes, the rest is left in the queue for any worker.
        assert asyncio.run(scenario()) == (2, unclaimed)


def test_other_processes_are_notified_only_of_deliveries_left_unclaimed(
    engine: Engine,
) -> None:
    if db.is_sqlite(engine):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    org, _ = make_org_and_keys(engine)
    a = "http://127.0.0.1:9/a"
    b = "http://127.0.0.1:10/b"
    add_config(engine, org, a)
    add_config(engine, org, b)
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")

        def publish(event_id: str, handoff: TakeSome) -> int:
            now = utcnow()
            publishing.store_events(
                engine,
                [NewEvent(org, event_id, "reward.claimed", now, "{}")],
                now=now,
                handoff=handoff,
            )
            return len(list(listener.notifies(timeout=0.3, stop_after=1)))

        assert publish("evt_all_taken", TakeSome(a, b)) == 0
        assert publish("evt_one_left", TakeSome(a)) == 1
        assert publish("evt_none_taken", TakeSome()) == 1
