"""Process faults around ``webhooks worker`` (a child process, the API in this one):

* SIGKILL mid-batch: the leases run out and a second worker delivers the rest;
* SIGTERM with attempts in flight: they finish within the grace period, what
  cannot finish (a hanging endpoint) and what was claimed but not started is
  released at once, so the next worker takes it immediately, not after the
  (60 s) lease;
* three workers racing for the same deliveries on PostgreSQL: nothing lost,
  and no delivery attempted twice at once (neither in the receiver's view of
  requests nor in the attempts table).
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.chaos import SUCCESS_MODES, Hit, running_chaos
from tests.support.faults import (
    attempts_by_event,
    aware,
    final_statuses,
    org_with_endpoint,
    pending_summary,
    publish,
    report,
    statuses,
    wait_listening,
    worker_process,
)
from tests.support.polling import eventually
from tests.support.server import running_server
from webhooks_service.storage.models import utcnow

pytestmark = [pytest.mark.faults]


def successes(hits: list[Hit]) -> int:
    return sum(h.mode in SUCCESS_MODES for h in hits)


def test_sigkill_mid_batch_then_a_new_worker_loses_nothing(
    database_url: str, tmp_path: Path
) -> None:
    events = 1000
    event_ids = [f"kill-{i}" for i in range(events)]
    settings = {"LEASE_SECONDS": "2", "RETRY_SCHEDULE": "0.1,0.1,0.1", "MAX_IN_FLIGHT": "64"}
    with (
        running_chaos(lambda _e, _n: "slow", slow_seconds=0.02) as rx,
        running_server(database_url) as srv,
    ):
        org_id, keys = org_with_endpoint(srv.engine, database_url, rx.url())
        with worker_process(database_url, tmp_path, settings) as first:
            publish(srv.target, keys["events:publish"], org_id, event_ids)
            eventually(lambda: len(rx.snapshot()) >= 150, 30, "the first worker to get going")
            first.kill()
        killed_at = utcnow()
        before = statuses(srv.engine)
        with srv.engine.connect() as conn:
            claimed = int(
                conn.execute(
                    sa.text("SELECT count(*) FROM deliveries WHERE claim_token IS NOT NULL")
                ).scalar_one()
            )
        assert before.get("delivered", 0) < events, "all delivered before the kill"
        assert claimed > 0, "the kill caught no claimed delivery"
        with worker_process(database_url, tmp_path, settings) as second:
            eventually(
                lambda: statuses(srv.engine).get("delivered", 0) == events,
                60,
                "the second worker to deliver everything",
            )
            recovered_in = (utcnow() - killed_at).total_seconds()
            assert second.terminate() == 0
        logged = attempts_by_event(srv.engine)
        states = final_statuses(srv.engine)
    seen = rx.by_event()
    assert set(seen) == set(event_ids)  # every event reached the endpoint
    assert states == dict.fromkeys(event_ids, "delivered")
    # Every delivery has exactly one logged successful attempt; attempts the
    # killed worker made but could not record show up as extra requests.
    assert all(sum(r.outcome == "delivered" for r in logged[e]) == 1 for e in event_ids)
    duplicated = sum(successes(h) > 1 for h in seen.values())
    report(
        "SIGKILL worker mid-batch",
        database_url,
        events_sent=events,
        delivered=sum(s == "delivered" for s in states.values()),
        duplicated=duplicated,
        lost=events - len(set(seen) & set(event_ids)),
        delivered_before_kill=before.get("delivered", 0),
        claimed_at_kill=claimed,
        requests=sum(len(h) for h in seen.values()),
        attempts_logged=sum(len(r) for r in logged.values()),
        seconds_to_recover=round(recovered_in, 1),
    )


def test_sigterm_finishes_in_flight_within_grace_and_releases_the_rest(
    database_url: str, tmp_path: Path
) -> None:
    """8 attempts in flight at SIGTERM: 6 slow ones (1 s) finish within the 3 s
    grace, 2 hanging ones are cut off and released; the claimed-but-waiting
    batch is released too. The next worker (lease 60 s) delivers everything
    within seconds."""
    events = 40
    event_ids = [f"term-{i}" for i in range(events)]
    order = itertools.count()
    lock = threading.Lock()

    def plan(_event_id: str, n: int) -> str:
        with lock:
            k = next(order)
        if k < 8 and n == 0:
            return "hang" if k in (3, 6) else "slow"
        return "ok"

    settings = {
        "LEASE_SECONDS": "60",
        "SHUTDOWN_GRACE": "3",
        "ATTEMPT_TIMEOUT": "30",
        # Alone, an organisation gets half the global limit (the fair
        # scheduler keeps a share for a newcomer): 16 lets its 8 run at once.
        "MAX_IN_FLIGHT": "16",
        "MAX_IN_FLIGHT_PER_ENDPOINT": "8",
        "CLAIM_BATCH_SIZE": "8",
    }
    with running_chaos(plan, slow_seconds=1.0) as rx, running_server(database_url) as srv:
        org_id, keys = org_with_endpoint(srv.engine, database_url, rx.url())
        with worker_process(database_url, tmp_path, settings) as first:
            publish(srv.target, keys["events:publish"], org_id, event_ids)
            eventually(lambda: len(rx.snapshot()) >= 8, 30, "8 attempts in flight")
            sent_term = time.monotonic()
            assert first.terminate() == 0
            stopped_in = time.monotonic() - sent_term
            worker_log = first.log()
        stopped_at = utcnow()
        hits_at_stop = rx.by_event()
        logged = attempts_by_event(srv.engine)
        with srv.engine.connect() as conn:
            pending = conn.execute(
                sa.text(
                    "SELECT count(*), count(claim_token), max(next_attempt_at) FROM deliveries"
                    " WHERE status = 'pending'"
                )
            ).one()
        slow = [e for e, h in hits_at_stop.items() if h[0].mode == "slow"]
        hung = [e for e, h in hits_at_stop.items() if h[0].mode == "hang"]
        assert len(slow) == 6 and len(hung) == 2 and len(hits_at_stop) == 8
        # In flight and fast enough: finished and logged within the grace period.
        assert all([r.outcome for r in logged.get(e, [])] == ["delivered"] for e in slow)
        # The stop waited the grace (3 s) and cut the hanging ones off (the log line
        # below), not their 30 s attempt timeout. A bound against the timeout, not
        # grace + 2 s: a loaded machine took 5.2 and 6.7 s (issue 24).
        assert stopped_in < 30
        # Cut off at the end of the grace period: released, not logged.
        assert "released 2 attempts still running at shutdown" in worker_log
        assert all(e not in logged for e in hung)
        # Nothing is left under a lease: all of it is due now.
        count, still_claimed, latest_due = pending
        assert count == events - 6 and still_claimed == 0
        assert aware(latest_due) <= stopped_at + timedelta(seconds=1)

        with worker_process(database_url, tmp_path, settings) as second:
            started = time.monotonic()
            try:
                eventually(
                    lambda: statuses(srv.engine).get("delivered", 0) == events,
                    20,
                    "the next worker to deliver the released work",
                )
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}: {pending_summary(srv.engine)}; {len(rx.snapshot())} requests;"
                    f" {second.log()}"
                ) from None
            drained_in = time.monotonic() - started
            assert second.terminate() == 0
        states = final_statuses(srv.engine)
    seen = rx.by_event()
    assert states == dict.fromkeys(event_ids, "delivered")
    assert all(successes(seen[e]) == 1 for e in event_ids)
    assert drained_in < 15  # released, not waiting for the 60 s lease
    report(
        "SIGTERM with attempts in flight",
        database_url,
        events_sent=events,
        delivered=len(states),
        duplicated=sum(successes(h) > 1 for h in seen.values()),
        lost=events - sum(s == "delivered" for s in states.values()),
        in_flight_at_sigterm=8,
        finished_within_grace=len(slow),
        released_in_flight=len(hung),
        released_or_unclaimed=count,
        seconds_to_stop=round(stopped_in, 2),
        seconds_to_drain_after_restart=round(drained_in, 2),
        lease_seconds=60,
    )


def overlapping(intervals: list[tuple[float, float]]) -> bool:
    ordered = sorted(intervals)
    return any(b[0] < a[1] for a, b in itertools.pairwise(ordered))


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_three_workers_racing_never_claim_a_delivery_twice(
    database_url: str, tmp_path: Path
) -> None:
    events = 1500
    event_ids = [f"race-{i}" for i in range(events)]

    def plan(event_id: str, n: int) -> str:
        if n == 0 and int(event_id.split("-")[1]) % 5 == 0:
            return "error500"  # retried: the retry is raced for as well
        return "ok"

    settings = {"LEASE_SECONDS": "60", "RETRY_SCHEDULE": "0.2,0.2", "CLAIM_BATCH_SIZE": "50"}
    with running_chaos(plan) as rx, running_server(database_url) as srv:
        org_id, keys = org_with_endpoint(srv.engine, database_url, rx.url())
        with (
            worker_process(database_url, tmp_path, settings) as w1,
            worker_process(database_url, tmp_path, settings) as w2,
            worker_process(database_url, tmp_path, settings) as w3,
        ):
            wait_listening(database_url, 3)
            idle_cpu = [w.cpu_seconds() for w in (w1, w2, w3)]
            publish(srv.target, keys["events:publish"], org_id, event_ids)
            eventually(
                lambda: statuses(srv.engine).get("delivered", 0) == events,
                60,
                "three workers to deliver everything",
            )
            cpu = [w.cpu_seconds() - idle for w, idle in zip((w1, w2, w3), idle_cpu, strict=True)]
            assert [w.terminate() for w in (w1, w2, w3)] == [0, 0, 0]
        logged = attempts_by_event(srv.engine)
        states = final_statuses(srv.engine)
    seen = rx.by_event()
    retried = {e for e in event_ids if int(e.split("-")[1]) % 5 == 0}
    assert states == dict.fromkeys(event_ids, "delivered")
    for e in event_ids:
        expected = 2 if e in retried else 1
        assert len(seen[e]) == expected, f"{e}: {len(seen[e])} requests"
        assert [r.attempt for r in logged[e]] == list(range(1, expected + 1))
        assert not overlapping([(h.arrived, h.ended) for h in seen[e]])
        spans = [
            (r.attempted_at.timestamp(), r.attempted_at.timestamp() + r.duration_ms / 1000)
            for r in logged[e]
        ]
        assert not overlapping(spans)
    report(
        "three workers racing (PostgreSQL)",
        database_url,
        events_sent=events,
        delivered=len(states),
        duplicated=sum(successes(h) > 1 for h in seen.values()),
        lost=events - len(seen),
        requests=sum(len(h) for h in seen.values()),
        attempts_logged=sum(len(r) for r in logged.values()),
        concurrent_attempts_of_one_delivery=0,
        worker_cpu_seconds=[round(c, 2) for c in cpu],
    )
    assert min(cpu) > 0.1 * max(cpu), f"not a race: one worker did (almost) nothing {cpu}"


def test_a_full_worker_woken_up_still_runs_its_attempts(database_url: str) -> None:
    """Regression: with every slot taken, a wake-up (publish, NOTIFY) used to
    make the worker's loop spin without yielding, so the attempts it waited
    for never ran. One slot, a slow endpoint, wake-ups every 20 ms."""
    overrides = {"max_in_flight": 1, "max_in_flight_per_endpoint": 1, "claim_batch_size": 1}
    with (
        running_chaos(lambda _e, _n: "slow", slow_seconds=0.3) as rx,
        running_server(database_url, overrides, worker=True) as srv,
    ):
        org_id, keys = org_with_endpoint(srv.engine, database_url, rx.url())
        publish(srv.target, keys["events:publish"], org_id, ["full-0", "full-1", "full-2"])
        deadline = time.monotonic() + 10
        while statuses(srv.engine).get("delivered", 0) < 3:
            assert time.monotonic() < deadline, f"stalled: {statuses(srv.engine)}"
            srv.loop.call_soon_threadsafe(srv.wakeup.set)
            time.sleep(0.02)
    assert sorted(rx.by_event()) == ["full-0", "full-1", "full-2"]
