"""Ordered delivery per key (issue 22), on both databases with real receivers.

- End to end: 20 keys x 50 events to an ordered endpoint (a chaos receiver that
  answers each key's 3rd event 500 twice): every key arrives in sequence order,
  1..50 with no gap, never two requests of one key at once; the keys back off
  side by side; a key whose head backs off holds back only itself.
- Two ``webhooks worker`` processes on PostgreSQL, one SIGKILLed mid-run:
  order still holds per key and nothing is lost.
- The queue's rules without a worker: sequence numbers (per organisation and
  key, duplicates get none, concurrent publishers on PostgreSQL), held
  deliveries and the hand-off, promotion, retry/replay of an old event, the
  switch unordered <-> ordered, the receiver helpers.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.chaos import SUCCESS_MODES, Hit, running_chaos
from tests.support.faults import report, statuses, wait_listening, worker_process
from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.server import make_org_and_keys, running_server
from tests.support.server import test_settings as make_settings
from webhooks_client import (
    AdminClient,
    InvalidArgumentError,
    Ordering,
    PublisherClient,
    SequenceCheck,
    WebhookVerificationError,
    make_publish_request,
    ordering,
    signed_headers,
)
from webhooks_service.core import configs
from webhooks_service.domain import HELD_UNTIL, new_lease, utcnow
from webhooks_service.storage import queue, replay
from webhooks_service.storage.models import Delivery, Event

KEYS = 20
PER_KEY = 50
FAILING = 3  # each key's 3rd event is answered 500 twice


def key_of(i: int) -> str:
    return f"user-{i % KEYS}"


def event_ids(keys: int = KEYS, per_key: int = PER_KEY) -> list[tuple[str, str]]:
    """(event id, key), keys interleaved: event n of every key before event n+1 of any."""
    return [(f"k{k}-e{n}", f"user-{k}") for n in range(1, per_key + 1) for k in range(keys)]


def put_endpoint(engine: Engine, database_url: str, org_id: str, url: str, **kw: Any) -> str:
    result = configs.put_config(
        engine,
        make_settings(database_url),
        org_id,
        config_id=kw.pop("config_id", ""),
        url=url,
        event_types=["*"],
        secret=None,
        enabled=None,
        description="",
        ordered=kw.pop("ordered", True),
    )
    return result.config.id


def publish_keyed(target: str, key: str, org_id: str, events: list[tuple[str, str]]) -> None:
    with PublisherClient(target, key) as pub:
        for start in range(0, len(events), 500):
            results = pub.publish_events(
                [
                    make_publish_request(
                        org_id,
                        "reward.claimed",
                        example("reward.claimed"),
                        id=event_id,
                        ordering_key=k,
                    )
                    for event_id, k in events[start : start + 500]
                ]
            )
            assert all(r.deliveries == 1 and not r.duplicate for r in results)


def fails_third_twice(keys: Callable[[int], bool] = lambda _k: True) -> Callable[[str, int], str]:
    def plan(event_id: str, n: int) -> str:
        k, e = event_id.split("-")
        return "error500" if int(e[1:]) == FAILING and n < 2 and keys(int(k[1:])) else "ok"

    return plan


def by_key(hits: list[Hit]) -> dict[str, list[Hit]]:
    out: dict[str, list[Hit]] = {}
    for h in sorted(hits, key=lambda h: h.arrived):
        out.setdefault(h.headers.get("webhook-ordering-key", ""), []).append(h)
    return out


def overlapping(hits: list[Hit]) -> bool:
    spans = sorted((h.arrived, h.ended) for h in hits)
    return any(b[0] < a[1] for a, b in itertools.pairwise(spans))


def check_order(hits: list[Hit], *, redelivered_ok: bool = False) -> dict[str, Any]:
    """Per key: the 2xx deliveries in arrival order are 1..PER_KEY; every request
    carries its event's sequence (k{K}-e{n} is number n of user-K); never two
    requests of one key at once. ``redelivered_ok``: a request may repeat the
    number just delivered (an attempt whose record a killed worker lost)."""
    keys = by_key(hits)
    assert sorted(keys) == sorted(f"user-{k}" for k in range(KEYS))
    repeats = 0
    for key, key_hits in keys.items():
        for h in key_hits:
            assert h.headers["webhook-sequence"] == h.event_id.split("-e")[1], h
            assert h.headers["webhook-ordering-key"] == key
        seqs = [int(h.headers["webhook-sequence"]) for h in key_hits]
        assert seqs == sorted(seqs), f"{key} out of order: {seqs}"
        ok = [int(h.headers["webhook-sequence"]) for h in key_hits if h.mode in SUCCESS_MODES]
        first = list(dict.fromkeys(ok))
        assert first == list(range(1, PER_KEY + 1)), f"{key}: gap or loss: {first}"
        repeats += len(ok) - len(first)
        if not redelivered_ok:
            assert len(ok) == PER_KEY, f"{key}: {ok}"
        assert not overlapping(key_hits), f"two attempts of {key} at once"
    return {"keys": len(keys), "redelivered": repeats}


# -- end to end ---------------------------------------------------------------------------


def deliver_keyed(
    database_url: str, overrides: dict[str, Any], receiver: Callable[[str, int], str]
) -> tuple[list[Hit], float]:
    """KEYS x PER_KEY keyed events to one ordered endpoint answering as
    ``receiver`` does: what it received once every event was delivered, and
    the seconds from publishing to then."""
    with (
        running_chaos(receiver) as rx,
        running_server(database_url, overrides, worker=True) as srv,
    ):
        org_id, keys = make_org_and_keys(srv.engine)
        put_endpoint(srv.engine, database_url, org_id, rx.url())
        started = time.monotonic()
        publish_keyed(srv.target, keys["events:publish"], org_id, event_ids())
        eventually(
            lambda: statuses(srv.engine).get("delivered", 0) == KEYS * PER_KEY,
            60,
            "every event delivered",
        )
        return rx.snapshot(), time.monotonic() - started


def test_twenty_keys_of_fifty_arrive_in_sequence_while_heads_retry(database_url: str) -> None:
    """Every key's 3rd event fails twice (backoff 0.5 s, then 0.5 s): each key
    waits 1 s behind its head, all keys at the same time — so the whole run takes
    about one key's backoff, not twenty."""
    overrides = {"retry_schedule": (0.5, 0.5, 0.5), "poll_interval": 0.1}
    hits, elapsed = deliver_keyed(database_url, overrides, fails_third_twice())
    figures = check_order(hits)
    assert len(hits) == KEYS * PER_KEY + 2 * KEYS  # the two 500s of each key's 3rd event
    # All keys wait at the same time: every key's failing head was first tried
    # before any key's head got through (one after the other, a key's head would
    # be tried only after the previous key's had been delivered).
    failing = [h for h in hits if h.event_id.endswith(f"-e{FAILING}")]
    first_tries = max(h.arrived for h in failing if h.n == 0)
    first_through = min(h.arrived for h in failing if h.n == 2)
    assert first_tries < first_through, "keys waited for each other"
    report("ordered 20x50, 3rd fails twice", database_url, seconds=round(elapsed, 2), **figures)


def test_a_key_backing_off_holds_back_only_itself(database_url: str) -> None:
    """Only user-0's 3rd event fails (twice, 4 s backoff each): the other 19 keys
    go on while user-0 waits at its 3rd (on an idle machine they are all done
    before it; on a loaded one, each of them still moves during its backoff)."""
    overrides = {"retry_schedule": (4.0, 4.0, 4.0), "poll_interval": 0.1}
    hits, all_in = deliver_keyed(database_url, overrides, fails_third_twice(lambda k: k == 0))
    check_order(hits)
    keyed = by_key(hits)
    mine = [(int(h.headers["webhook-sequence"]), h.mode) for h in keyed["user-0"]]
    assert mine[:5] == [(1, "ok"), (2, "ok"), (3, "error500"), (3, "error500"), (3, "ok")]
    failed_at = keyed["user-0"][2].arrived
    through_at = keyed["user-0"][4].arrived
    # user-0 waited out its 8 s of backoff (two retries, 4 s each) ...
    assert through_at - failed_at >= 8.0
    # ... and held back no one else: every other key finished before user-0's 3rd
    # got through, or was delivered to during its backoff.
    for k in range(1, KEYS):
        theirs = [h.arrived for h in keyed[f"user-{k}"] if h.mode == "ok"]
        assert max(theirs) < through_at or any(failed_at < t < through_at for t in theirs), k
    others_in = max(h.arrived for k in range(1, KEYS) for h in keyed[f"user-{k}"]) - failed_at
    report(
        "one key backing off",
        database_url,
        others_done_s=round(others_in, 2),
        all_done_s=round(all_in, 2),
    )


@pytest.mark.faults
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_worker_processes_and_a_sigkill_keep_each_key_in_order(
    database_url: str, tmp_path: Path
) -> None:
    settings = {
        "LEASE_SECONDS": "2",
        "RETRY_SCHEDULE": "0.3,0.3,0.3",
        "CLAIM_BATCH_SIZE": "50",
        "MAX_IN_FLIGHT": "16",
    }
    with (
        running_chaos(fails_third_twice()) as rx,
        running_server(database_url) as srv,  # the API only: the two workers deliver
    ):
        org_id, keys = make_org_and_keys(srv.engine)
        put_endpoint(srv.engine, database_url, org_id, rx.url())
        with (
            worker_process(database_url, tmp_path, settings) as w1,
            worker_process(database_url, tmp_path, settings) as w2,
        ):
            wait_listening(database_url, 2)
            publish_keyed(srv.target, keys["events:publish"], org_id, event_ids())
            eventually(lambda: len(rx.snapshot()) >= 300, 30, "both workers to get going")
            w1.kill()
            with srv.engine.connect() as conn:
                claimed = int(
                    conn.execute(
                        sa.text("SELECT count(*) FROM deliveries WHERE claim_token IS NOT NULL")
                    ).scalar_one()
                )
            eventually(
                lambda: statuses(srv.engine).get("delivered", 0) == KEYS * PER_KEY,
                90,
                "the surviving worker to deliver everything",
            )
            assert w2.terminate() == 0
        hits = rx.snapshot()
    figures = check_order(hits, redelivered_ok=True)
    assert statuses(srv.engine) == {"delivered": KEYS * PER_KEY}
    report(
        "ordered, two workers, one SIGKILLed (PostgreSQL)",
        database_url,
        claimed_at_kill=claimed,
        requests=len(hits),
        lost=0,
        **figures,
    )


# -- the queue's rules, without a worker ---------------------------------------------------


def rows(engine: Engine) -> list[Any]:
    d = Delivery.__table__
    e = Event.__table__
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(
                    e.c.event_id,
                    d.c.id,
                    d.c.status,
                    d.c.ordering_key,
                    d.c.sequence,
                    d.c.next_attempt_at,
                    d.c.claim_token,
                    d.c.config_id,
                )
                .join(e, e.c.pk == d.c.event_pk)
                .order_by(d.c.id)
            )
        )


def active(engine: Engine) -> set[str]:
    return {r.event_id for r in rows(engine) if r.status == "pending" and not held(r)}


def held(r: Any) -> bool:
    return bool(r.next_attempt_at >= HELD_UNTIL)


def publish_one(pub: PublisherClient, org_id: str, event_id: str, key: str | None) -> Any:
    return pub.publish_event(
        org_id, "reward.claimed", example("reward.claimed"), id=event_id, ordering_key=key
    )


def test_sequences_per_organisation_and_key_and_duplicates_take_none(database_url: str) -> None:
    with running_server(database_url) as srv:
        org_id, keys = make_org_and_keys(srv.engine, "A")
        other_org, other_keys = make_org_and_keys(srv.engine, "B")
        put_endpoint(srv.engine, database_url, org_id, "http://127.0.0.1:9/hook")
        with PublisherClient(srv.target, keys["events:publish"]) as pub:
            publish_keyed(srv.target, keys["events:publish"], org_id, event_ids(2, 3))
            assert publish_one(pub, org_id, "k0-e1", "user-0").duplicate  # a retried publish
            publish_one(pub, org_id, "k0-e4", "user-0")
            publish_one(pub, org_id, "plain", None)
        with PublisherClient(srv.target, other_keys["events:publish"]) as pub:
            publish_one(pub, other_org, "b1", "user-0")  # another organisation's user-0
        with srv.engine.connect() as conn:
            numbered = {
                (r.organisation_id, r.event_id): (r.ordering_key, r.sequence)
                for r in conn.execute(sa.select(Event.__table__))
            }
    assert numbered == {
        (org_id, "k0-e1"): ("user-0", 1),
        (org_id, "k1-e1"): ("user-1", 1),
        (org_id, "k0-e2"): ("user-0", 2),
        (org_id, "k1-e2"): ("user-1", 2),
        (org_id, "k0-e3"): ("user-0", 3),
        (org_id, "k1-e3"): ("user-1", 3),
        (org_id, "k0-e4"): ("user-0", 4),  # no gap for the duplicate
        (org_id, "plain"): (None, None),
        (other_org, "b1"): ("user-0", 1),
    }


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_concurrent_publishers_of_one_key_get_distinct_numbers_in_their_order(
    database_url: str,
) -> None:
    """Eight threads publish 25 events each of one key, one at a time, at once:
    the numbers are 1..200 without duplicates, and each thread's events are
    numbered in the order it published them (acceptance order)."""
    with running_server(database_url) as srv:
        org_id, keys = make_org_and_keys(srv.engine)
        put_endpoint(srv.engine, database_url, org_id, "http://127.0.0.1:9/hook")
        barrier = threading.Barrier(8)

        def publisher(t: int) -> None:
            with PublisherClient(srv.target, keys["events:publish"]) as pub:
                barrier.wait()
                for n in range(25):
                    publish_one(pub, org_id, f"t{t}-{n}", "shared")

        threads = [threading.Thread(target=publisher, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        found = rows(srv.engine)
    numbers = {r.event_id: r.sequence for r in found}
    assert sorted(numbers.values()) == list(range(1, 201))
    for t in range(8):
        mine = [numbers[f"t{t}-{n}"] for n in range(25)]
        assert mine == sorted(mine)
    # One key, one endpoint: exactly one delivery is not held.
    assert len([r for r in found if not held(r)]) == 1
    assert min(found, key=lambda r: r.sequence).next_attempt_at < HELD_UNTIL


def test_only_a_keys_head_is_claimed_and_its_end_promotes_the_next(database_url: str) -> None:
    with running_server(database_url) as srv:
        org_id, keys = make_org_and_keys(srv.engine)
        ordered = put_endpoint(srv.engine, database_url, org_id, "http://127.0.0.1:9/a")
        with PublisherClient(srv.target, keys["events:publish"]) as pub:
            for n in (1, 2, 3):
                publish_one(pub, org_id, f"a{n}", "k")
            publish_one(pub, org_id, "b1", "other")
            publish_one(pub, org_id, "plain1", None)
            publish_one(pub, org_id, "plain2", None)
        assert active(srv.engine) == {"a1", "b1", "plain1", "plain2"}
        now = utcnow()
        claimed = queue.claim_due(srv.engine, now=now, lease_seconds=30, limit=100)
        assert sorted(c.event_id for c in claimed) == ["a1", "b1", "plain1", "plain2"]
        head = next(c for c in claimed if c.event_id == "a1")
        assert (head.ordering_key, head.sequence) == ("k", 1)
        # Nothing more is due: a2 and a3 wait behind a1 (claimed).
        assert queue.claim_due(srv.engine, now=now, lease_seconds=30, limit=100) == []
        # a1 fails and will retry: it stays the head; a2 stays held.
        retry = attempt_of(head, "retry_scheduled", next_at=now)
        promoted: list[Any] = []
        lease = new_lease(now, 30)
        queue.finish_batch(srv.engine, [retry], now=now, claim_next=lease, promoted=promoted)
        assert promoted == []
        assert active(srv.engine) == {"a1", "b1", "plain1", "plain2"}
        (again,) = [
            c
            for c in queue.claim_due(srv.engine, now=utcnow(), lease_seconds=30, limit=100)
            if c.event_id == "a1"
        ]
        # a1 delivered: a2 is promoted and claimed for the caller at once.
        done = attempt_of(again, "delivered")
        queue.finish_batch(srv.engine, [done], now=utcnow(), claim_next=lease, promoted=promoted)
        assert [(p.event_id, p.sequence, p.claim_token) for p in promoted] == [
            ("a2", 2, lease.token)
        ]
        # a2 dead: the key is released to a3 (due now, no caller claiming).
        queue.finish_batch(srv.engine, [attempt_of(promoted[0], "dead")], now=utcnow())
        assert "a3" in active(srv.engine)
        assert ordered


def attempt_of(c: Any, outcome: str, next_at: Any = None) -> Any:
    from webhooks_service.domain import FinishedAttempt, Outcome

    return FinishedAttempt(
        delivery_id=c.id,
        claim_token=c.claim_token,
        attempt=c.attempt,
        organisation_id=c.organisation_id,
        config_id=c.config_id,
        event_pk=c.event_pk,
        event_id=c.event_id,
        event_type=c.event_type,
        url=c.url,
        outcome=Outcome(outcome),
        attempted_at=utcnow(),
        next_attempt_at=next_at,
        response_status_code=200 if outcome == "delivered" else 500,
        ordering_key=c.ordering_key,
    )


def test_the_hand_off_never_overtakes_a_waiting_delivery(database_url: str) -> None:
    """With the worker in the process, publish hands deliveries straight over; a
    keyed one to an ordered endpoint is handed over only as its key's head."""
    with running_chaos(lambda _e, _n: "hang", hang_cap=5) as rx:
        overrides = {"attempt_timeout": 30.0}
        with running_server(database_url, overrides, worker=True) as srv:
            org_id, keys = make_org_and_keys(srv.engine)
            put_endpoint(srv.engine, database_url, org_id, rx.url())
            with PublisherClient(srv.target, keys["events:publish"]) as pub:
                publish_one(pub, org_id, "h1", "k")
                eventually(lambda: len(rx.snapshot()) == 1, 10, "h1 to be attempted")
                for n in (2, 3):
                    publish_one(pub, org_id, f"h{n}", "k")  # handed over? must not be
                publish_one(pub, org_id, "other", "k2")
            eventually(lambda: len(rx.snapshot()) == 2, 10, "the other key's head")
            # A claim after the publishes came back, and the worker runs only h1 and
            # "other" (both hang): h2 overtaking h1 would be a third attempt.
            srv.claimed_after()
            running = sorted(s.item.event_id for s in srv.worker.senders.running.values())
            assert running == ["h1", "other"]
            assert sorted(h.event_id for h in rx.snapshot()) == ["h1", "other"]
            found = {r.event_id: r for r in rows(srv.engine)}
            assert held(found["h2"]) and held(found["h3"]) and found["h1"].claim_token


def test_retry_and_replay_of_old_events_go_through_the_keys_queue(database_url: str) -> None:
    with running_server(database_url) as srv:
        org_id, keys = make_org_and_keys(srv.engine)
        config_id = put_endpoint(srv.engine, database_url, org_id, "http://127.0.0.1:9/a")
        with PublisherClient(srv.target, keys["events:publish"]) as pub:
            for n in (1, 2, 3):
                publish_one(pub, org_id, f"r{n}", "k")
        by_id = {r.event_id: r for r in rows(srv.engine)}
        # r1 ends dead; r2 becomes the head and is being attempted (claimed).
        (c1,) = queue.claim_due(srv.engine, now=utcnow(), lease_seconds=30, limit=10)
        queue.finish_batch(srv.engine, [attempt_of(c1, "dead")], now=utcnow())
        (c2,) = queue.claim_due(srv.engine, now=utcnow(), lease_seconds=30, limit=10)
        assert c2.event_id == "r2"
        # A manual retry of the dead r1 waits for r2 (not at once, not after r3).
        state, scheduled = replay.retry_delivery(srv.engine, org_id, by_id["r1"].id, utcnow())
        assert scheduled and state is not None and state.waiting_for_turn
        # Retrying a delivery that waits its turn changes nothing.
        state3, scheduled3 = replay.retry_delivery(srv.engine, org_id, by_id["r3"].id, utcnow())
        assert not scheduled3 and state3 is not None and state3.waiting_for_turn
        queue.finish_batch(srv.engine, [attempt_of(c2, "delivered")], now=utcnow())
        order = []
        for _ in range(2):
            (c,) = queue.claim_due(srv.engine, now=utcnow(), lease_seconds=30, limit=10)
            order.append((c.event_id, c.sequence))
            queue.finish_batch(srv.engine, [attempt_of(c, "dead")], now=utcnow())
        assert order == [("r1", 1), ("r3", 3)]  # the replayed old event first: lowest number
        # A replay of the range puts all three (dead) back: one at a time, in sequence.
        with AdminClient(srv.target, keys["all"]) as admin:
            replayed = admin.replay_deliveries(config_id, since=utcnow() - timedelta(hours=1))
        assert replayed == 2  # r1 and r3 (r2 was delivered)
        assert active(srv.engine) == {"r1"}
        assert {r.event_id for r in rows(srv.engine) if held(r)} == {"r3"}


def test_switching_ordered_on_and_off_reshapes_the_queue(database_url: str) -> None:
    with running_server(database_url) as srv:
        org_id, keys = make_org_and_keys(srv.engine)
        config_id = put_endpoint(
            srv.engine, database_url, org_id, "http://127.0.0.1:9/a", ordered=False
        )
        with PublisherClient(srv.target, keys["events:publish"]) as pub:
            for n in (1, 2, 3):
                publish_one(pub, org_id, f"s{n}", "k")
                publish_one(pub, org_id, f"t{n}", "j")
        assert active(srv.engine) == {"s1", "s2", "s3", "t1", "t2", "t3"}  # unordered
        # t1 is being attempted when the endpoint becomes ordered.
        claimed = queue.claim_due(srv.engine, now=utcnow(), lease_seconds=30, limit=10)
        (t1,) = [c for c in claimed if c.event_id == "t1"]
        queue.release(srv.engine, [c for c in claimed if c is not t1], now=utcnow())
        with AdminClient(srv.target, keys["all"]) as admin:
            cfg = admin.put_webhook_config(
                id=config_id, url="http://127.0.0.1:9/a", event_types=["*"], ordered=True
            ).config
            assert cfg.ordered
            # k: s1 stays active, s2 and s3 wait. j: t1 (in flight) is the head.
            assert active(srv.engine) == {"s1", "t1"}
            queue.finish_batch(srv.engine, [attempt_of(t1, "delivered")], now=utcnow())
            assert active(srv.engine) == {"s1", "t2"}
            delivery = next(r for r in rows(srv.engine) if r.event_id == "t3")
            assert delivery.sequence == 3
            admin.put_webhook_config(
                id=config_id, url="http://127.0.0.1:9/a", event_types=["*"], ordered=False
            )
        assert active(srv.engine) == {"s1", "s2", "s3", "t2", "t3"}


def test_ordered_is_kept_on_update_and_shown_over_grpc(database_url: str) -> None:
    with running_server(database_url) as srv:
        _org_id, keys = make_org_and_keys(srv.engine)
        with AdminClient(srv.target, keys["all"]) as admin:
            created = admin.put_webhook_config(
                url="http://127.0.0.1:9/a", event_types=["*"], ordered=True
            ).config
            kept = admin.put_webhook_config(
                id=created.id, url="http://127.0.0.1:9/b", event_types=["*"]
            ).config
            assert created.ordered and kept.ordered
            plain = admin.put_webhook_config(url="http://127.0.0.1:9/c", event_types=["*"])
            assert not plain.config.ordered


@pytest.mark.parametrize(
    "key", ["x" * 129, "has space", "tab\there", "é-accent", "line\nbreak"], ids=str
)
def test_a_bad_ordering_key_is_invalid_argument_naming_the_field(
    database_url: str, key: str
) -> None:
    with running_server(database_url) as srv:
        org_id, keys = make_org_and_keys(srv.engine)
        with (
            PublisherClient(srv.target, keys["events:publish"]) as pub,
            pytest.raises(InvalidArgumentError) as raised,
        ):
            publish_one(pub, org_id, "bad", key)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in raised.value.field_violations] == ["event.ordering_key"]
    assert "visible ASCII" in raised.value.field_violations[0].description


def test_the_log_and_the_receiver_helpers_carry_key_and_sequence(database_url: str) -> None:
    with running_chaos(lambda _e, _n: "ok") as rx:
        with running_server(database_url, worker=True) as srv:
            org_id, keys = make_org_and_keys(srv.engine)
            put_endpoint(srv.engine, database_url, org_id, rx.url())
            with PublisherClient(srv.target, keys["events:publish"]) as pub:
                publish_one(pub, org_id, "l1", "acct-7")
                publish_one(pub, org_id, "l2", "acct-7")
                publish_one(pub, org_id, "plain", None)
            eventually(lambda: len(rx.snapshot()) == 3, 15, "three deliveries")
            with AdminClient(srv.target, keys["all"]) as admin:
                logs = {e.event_id: e for e in eventually(lambda: _logs(admin, 3), 15, "logs")}
        hits = {h.event_id: h for h in rx.snapshot()}
    assert (logs["l2"].ordering_key, logs["l2"].sequence) == ("acct-7", 2)
    assert (logs["plain"].ordering_key, logs["plain"].sequence) == ("", 0)
    assert ordering(hits["l1"].headers) == Ordering("acct-7", 1)
    assert ordering(hits["plain"].headers) is None
    assert "webhook-sequence" not in hits["plain"].headers
    check = SequenceCheck()
    assert [check.check(Ordering("a", n)) for n in (1, 2, 2, 4, 1)] == [
        "next",
        "next",
        "seen",
        "gap",
        "seen",
    ]
    # Any header source, names in any case, as the signature helpers read them.
    signed = signed_headers("whsec_" + "A" * 32, b"{}")
    assert ordering({**signed, "Webhook-Ordering-Key": "u", "Webhook-Sequence": "9"}) == (
        Ordering("u", 9)
    )
    with pytest.raises(WebhookVerificationError):
        ordering({**signed, "webhook-ordering-key": "u"})  # a key without its number


def _logs(admin: AdminClient, n: int) -> list[Any] | None:
    page = admin.list_delivery_logs()
    return list(page.logs) if len(page.logs) >= n else None


def test_publish_rejects_nothing_for_unordered_endpoints_and_counts_deliveries(
    database_url: str,
) -> None:
    """Keys on an unordered endpoint: nothing is held; the sequence still travels."""
    with running_server(database_url) as srv:
        org_id, keys = make_org_and_keys(srv.engine)
        put_endpoint(srv.engine, database_url, org_id, "http://127.0.0.1:9/a", ordered=False)
        put_endpoint(srv.engine, database_url, org_id, "http://127.0.0.1:9/b", ordered=True)
        with PublisherClient(srv.target, keys["events:publish"]) as pub:
            results = [publish_one(pub, org_id, f"u{n}", "k") for n in (1, 2)]
        assert [r.deliveries for r in results] == [2, 2]
        found = rows(srv.engine)
    unheld = sorted((r.event_id, r.sequence) for r in found if not held(r))
    assert unheld == [("u1", 1), ("u1", 1), ("u2", 2)]


def test_grpc_delivery_shows_waiting_for_turn(database_url: str) -> None:
    with running_server(database_url) as srv:
        org_id, keys = make_org_and_keys(srv.engine)
        put_endpoint(srv.engine, database_url, org_id, "http://127.0.0.1:9/a")
        with PublisherClient(srv.target, keys["events:publish"]) as pub:
            publish_one(pub, org_id, "w1", "k")
            publish_one(pub, org_id, "w2", "k")
        with AdminClient(srv.target, keys["all"]) as admin:
            (c1,) = queue.claim_due(srv.engine, now=utcnow(), lease_seconds=30, limit=10)
            queue.finish_batch(srv.engine, [attempt_of(c1, "failed")], now=utcnow())
            (c2,) = queue.claim_due(srv.engine, now=utcnow(), lease_seconds=30, limit=10)
            queue.finish_batch(srv.engine, [attempt_of(c2, "failed")], now=utcnow())
            log = admin.list_delivery_logs().logs[0]
            first = admin.retry_delivery(log.delivery_id).delivery  # w2 first: idle key
            second = admin.retry_delivery(admin.list_delivery_logs().logs[1].delivery_id).delivery
        assert not first.waiting_for_turn and first.next_attempt_at is not None
        assert second.waiting_for_turn and second.next_attempt_at is None
        assert (second.ordering_key, second.sequence) == ("k", 1)
