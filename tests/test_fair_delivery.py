"""Fairness end to end, on SQLite and PostgreSQL: one organisation's flood to a
host that never answers neither delays another organisation's deliveries nor
takes more than its destination's (shrinking) limit of connections.

The scheduler's rules are unit-tested in tests/test_scheduler.py; these run
the real worker, database and receiver.
"""

from __future__ import annotations

import asyncio

from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Receiver, Reply, running_receiver
from tests.support.server import make_org_and_keys, running_server
from tests.support.server import test_settings as make_settings
from webhooks_client import AdminClient, PublisherClient, make_publish_request
from webhooks_service.delivery.worker import DeliveryWorker
from webhooks_service.domain import utcnow
from webhooks_service.storage import db

LIMITS = {
    "max_in_flight": 32,
    "max_in_flight_per_endpoint": 4,
    "claim_batch_size": 20,
    "attempt_timeout": 4.0,
    "retry_schedule": (60.0,),
    "poll_interval": 0.2,
}
HANG_CONFIGS = 20


def hanging_paths() -> list[str]:
    return [f"/hang/{i}" for i in range(HANG_CONFIGS)]


def hang_count(rx: Receiver) -> int:
    return sum(rx.count(p) for p in hanging_paths())


def test_a_flood_to_a_hanging_host_neither_delays_others_nor_takes_more_than_its_limit(
    database_url: str,
) -> None:
    with running_receiver() as rx, running_server(database_url, LIMITS, worker=True) as srv:
        org_a, keys_a = make_org_and_keys(srv.engine, "Abuser")
        org_b, keys_b = make_org_and_keys(srv.engine, "Bystander")
        with AdminClient(srv.target, keys_a["all"]) as admin_a:
            for path in hanging_paths():  # 20 configurations, one host
                rx.program(path, Reply(hang=True))
                admin_a.put_webhook_config(url=rx.url(path), event_types=["*"])
        with AdminClient(srv.target, keys_b["all"]) as admin_b:
            admin_b.put_webhook_config(url=rx.url("/ok"), event_types=["*"])
        with PublisherClient(srv.target, keys_a["events:publish"]) as pub_a:
            pub_a.publish_events(
                [make_publish_request(org_a, "reward.claimed", example()) for i in range(5)]
            )  # 100 deliveries to the hanging host
        with PublisherClient(srv.target, keys_b["events:publish"]) as pub_b:
            for i in range(5):
                pub_b.publish_event(org_b, "reward.claimed", example(), id=f"evt_b{i}")
                rx.wait_for(i + 1, "/ok", timeout=10)
                # B never waits for A's attempts to time out (4 s): each of B's
                # arrives before A's second window, which starts after the timeouts.
                assert hang_count(rx) <= 4
        # A's 20 configurations share one destination limit of 4 connections.
        assert hang_count(rx) == 4
        # After the timeouts, the limit halves: the next window has 2.
        eventually(lambda: hang_count(rx) >= 6, 15, "the second window of attempts")
        # Settled: a claim after the second window found room for no third attempt
        # (the worker's own count of what runs, not a sleep).
        srv.claimed_after()
        running = [s.item for s in srv.worker.senders.running.values()]
        assert [d.organisation_id for d in running] == [org_a, org_a]
        assert hang_count(rx) == 6


def test_claims_reach_another_organisation_behind_a_large_backlog(database_url: str) -> None:
    """Deliveries published while no worker runs: A's 100 are due before B's one,
    and the claim batch is 20; B's is still among the first started."""
    settings = make_settings(database_url, LIMITS)
    with running_receiver() as rx, running_server(database_url, LIMITS) as srv:
        org_a, keys_a = make_org_and_keys(srv.engine, "Abuser")
        org_b, keys_b = make_org_and_keys(srv.engine, "Bystander")
        with AdminClient(srv.target, keys_a["all"]) as admin_a:
            for path in hanging_paths():
                rx.program(path, Reply(hang=True))
                admin_a.put_webhook_config(url=rx.url(path), event_types=["*"])
        with AdminClient(srv.target, keys_b["all"]) as admin_b:
            admin_b.put_webhook_config(url=rx.url("/ok"), event_types=["*"])
        with PublisherClient(srv.target, keys_a["events:publish"]) as pub_a:
            pub_a.publish_events(
                [make_publish_request(org_a, "reward.claimed", example()) for i in range(5)]
            )
        published_a = utcnow()
        eventually(lambda: utcnow() > published_a, 1, "the clock to move on")  # B due after A
        with PublisherClient(srv.target, keys_b["events:publish"]) as pub_b:
            pub_b.publish_event(org_b, "reward.claimed", example(), id="evt_b")

        engine = db.create_engine(database_url)

        async def run() -> int:
            worker = DeliveryWorker(settings, engine)
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop))
            try:
                await asyncio.to_thread(rx.wait_for, 1, "/ok", 10)
                return hang_count(rx)
            finally:
                stop.set()
                await task

        try:
            hanging_at_b = asyncio.run(run())
        finally:
            engine.dispose()
        # not after A's 4 s timeouts: B arrived before A's second window
        assert hanging_at_b <= 4
        assert hang_count(rx) == 4


def test_an_organisations_hanging_endpoint_does_not_hold_back_its_healthy_one(
    database_url: str,
) -> None:
    with running_receiver() as rx, running_server(database_url, LIMITS, worker=True) as srv:
        org, keys = make_org_and_keys(srv.engine)
        rx.program("/hang", Reply(hang=True))
        with AdminClient(srv.target, keys["all"]) as admin:
            admin.put_webhook_config(url=rx.url("/hang"), event_types=["*"])
            admin.put_webhook_config(url=f"http://localhost:{rx.port}/ok", event_types=["*"])
        with PublisherClient(srv.target, keys["events:publish"]) as pub:
            pub.publish_events(
                [make_publish_request(org, "reward.claimed", example()) for i in range(100)]
            )
        # All 100 reach the healthy endpoint before the first timeouts (4 s; after
        # them a second window of 2 would start), although the hanging one's 96
        # waiting deliveries exceed the prefetch.
        rx.wait_for(100, "/ok", timeout=15)
        assert rx.count("/hang") == 4


def test_a_backlog_larger_than_a_batch_drains_without_waiting_for_the_poll(
    database_url: str,
) -> None:
    """Claims follow the work: when a destination the last claim skipped has room
    again, the worker claims at once (not at the next poll, here 30 s away)."""
    overrides = {**LIMITS, "poll_interval": 30.0}
    with running_receiver() as rx, running_server(database_url, overrides, worker=True) as srv:
        org, keys = make_org_and_keys(srv.engine)
        with AdminClient(srv.target, keys["all"]) as admin:
            admin.put_webhook_config(url=rx.url("/fast"), event_types=["*"])
        with PublisherClient(srv.target, keys["events:publish"]) as pub:
            pub.publish_events(
                [make_publish_request(org, "reward.claimed", example()) for i in range(300)]
            )
        rx.wait_for(300, "/fast", timeout=10)  # 15 batches of 20
