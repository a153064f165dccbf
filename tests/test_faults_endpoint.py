"""Endpoint chaos: a receiver answering a seeded random mix of 500s, 429 with
Retry-After, resets mid-response, hangs past the timeout, a 50 MB body and
bytes that are not HTTP. ``webhooks worker`` runs as its own process, so its
peak memory (VmHWM) is the worker's alone.

Checked, per event: the endpoint saw exactly as many requests as the log has
attempts, each logged attempt says what the endpoint did, 429's Retry-After was
honoured, and the final state is what the policy gives for that sequence
(delivered at the first 2xx, dead after the last retry). The 50 MB bodies are
not buffered: the worker's peak RSS grows far less than one of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chaos import MODES, SUCCESS_MODES, Hit, running_chaos, seeded_plan
from tests.support.faults import (
    AttemptRow,
    attempts_by_event,
    final_statuses,
    org_with_endpoint,
    publish,
    report,
    worker_process,
)
from tests.support.polling import eventually
from tests.support.server import running_server

pytestmark = [pytest.mark.faults]

EVENTS = 60
SCHEDULE = (0.2, 0.2, 0.2, 0.2, 0.2)
MAX_ATTEMPTS = len(SCHEDULE) + 1
ATTEMPT_TIMEOUT = 1.0
RETRY_AFTER = 1
# The first attempt of the first events is forced, so every mode occurs in
# every run (three 50 MB bodies at least), whatever the seed draws.
FORCED = [*MODES, "huge", "huge"]
MEMORY_GROWTH_LIMIT_KIB = 30 * 1024  # well under one 50 MB body


def expected_outcome(hits: list[Hit]) -> tuple[str, int]:
    """(final status, attempts) that the policy gives for what the endpoint did."""
    for h in hits:
        if h.mode in SUCCESS_MODES:
            return "delivered", h.n + 1
        if h.n + 1 == MAX_ATTEMPTS:
            return "dead", MAX_ATTEMPTS
    return "pending", len(hits)


def check_attempt(hit: Hit, row: AttemptRow, following: Hit | None) -> None:
    where = f"{hit.event_id} attempt {row.attempt} ({hit.mode}): {row}"
    if hit.mode in SUCCESS_MODES:
        assert (row.outcome, row.status_code) == ("delivered", 200), where
        assert row.truncated == (hit.mode == "huge"), where
        return
    final = row.attempt == MAX_ATTEMPTS
    assert row.outcome == ("dead" if final else "retry_scheduled"), where
    if hit.mode == "error500":
        assert row.status_code == 500, where
    elif hit.mode == "throttle429":
        assert row.status_code == 429, where
        if not final:
            assert row.next_attempt_at is not None
            assert (row.next_attempt_at - row.attempted_at).total_seconds() >= RETRY_AFTER, where
            assert following is not None and following.arrived - hit.arrived >= RETRY_AFTER - 0.05
    elif hit.mode == "hang":
        assert row.status_code == 0 and "timeout" in row.error, where
        assert row.duration_ms >= ATTEMPT_TIMEOUT * 1000 * 0.9, where
    else:  # reset, garbage: no usable response
        assert row.status_code == 0 and row.error, where


def test_endpoint_chaos_every_event_ends_as_the_policy_says(
    database_url: str, tmp_path: Path
) -> None:
    base = seeded_plan(20261127)

    def plan(event_id: str, n: int) -> str:
        index = int(event_id.split("-")[1])
        if n == 0 and index < len(FORCED):
            return FORCED[index]
        return base(event_id, n)

    event_ids = [f"chaos-{i}" for i in range(EVENTS)]
    with running_chaos(plan, retry_after=RETRY_AFTER) as rx, running_server(database_url) as srv:
        org_id, keys = org_with_endpoint(srv.engine, database_url, rx.url())
        settings = {
            "RETRY_SCHEDULE": ",".join(map(str, SCHEDULE)),
            "ATTEMPT_TIMEOUT": str(ATTEMPT_TIMEOUT),
            "CONNECT_TIMEOUT": "1",
        }
        with worker_process(database_url, tmp_path, settings) as worker:
            baseline_kib = worker.status_kib("VmHWM")
            publish(srv.target, keys["events:publish"], org_id, event_ids)

            def settled() -> bool:
                states = final_statuses(srv.engine)
                return len(states) == EVENTS and "pending" not in states.values()

            eventually(settled, 90, "every chaos delivery to settle")
            peak_kib = worker.status_kib("VmHWM")
            assert worker.terminate() == 0
        states = final_statuses(srv.engine)
        logged = attempts_by_event(srv.engine)
    seen = rx.by_event()

    mismatched = []
    for event_id in event_ids:
        hits, rows = seen.get(event_id, []), logged.get(event_id, [])
        assert [h.n for h in hits] == list(range(len(hits)))
        assert len(rows) == len(hits), f"{event_id}: {len(hits)} requests, {len(rows)} logged"
        assert [r.attempt for r in rows] == list(range(1, len(rows) + 1))
        for i, (hit, row) in enumerate(zip(hits, rows, strict=True)):
            check_attempt(hit, row, hits[i + 1] if i + 1 < len(hits) else None)
        status, attempts = expected_outcome(hits)
        if (states.get(event_id), len(rows)) != (status, attempts):
            mismatched.append((event_id, states.get(event_id), [h.mode for h in hits]))
    assert not mismatched

    huge = [h for hits in seen.values() for h in hits if h.mode == "huge"]
    modes = {m: sum(h.mode == m for hits in seen.values() for h in hits) for m in MODES}
    delivered = sum(s == "delivered" for s in states.values())
    duplicated = sum(sum(h.mode in SUCCESS_MODES for h in hits) > 1 for hits in seen.values())
    report(
        "endpoint chaos",
        database_url,
        events_sent=EVENTS,
        delivered=delivered,
        dead=sum(s == "dead" for s in states.values()),
        duplicated=duplicated,
        lost=EVENTS - len(states) + len(mismatched),
        requests=sum(len(h) for h in seen.values()),
        attempts_logged=sum(len(r) for r in logged.values()),
        modes=modes,
        huge_bodies=len(huge),
        huge_most_bytes_sent_mib=round(max(h.sent for h in huge) / 2**20, 1),
        worker_peak_rss_mib=round(peak_kib / 1024, 1),
        worker_peak_growth_mib=round((peak_kib - baseline_kib) / 1024, 1),
    )
    assert modes["huge"] >= 3 and all(m > 0 for m in modes.values())
    assert duplicated == 0
    assert peak_kib - baseline_kib < MEMORY_GROWTH_LIMIT_KIB, (baseline_kib, peak_kib)
    # The worker hung up early: the endpoint could never push a whole body.
    assert max(h.sent for h in huge) < 20 * 2**20
