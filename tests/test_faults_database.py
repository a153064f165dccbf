"""Database faults while events flow (API + worker in one process, as ``webhooks serve``):

* PostgreSQL stopped for a few seconds and started again: the API answers
  UNAVAILABLE (503 through the gateway), never INTERNAL; the publisher retries
  with the same event ids; the worker backs off and resumes; nothing is lost.
  The server is shared with other test sessions on this machine, so the
  outage is short and the server is always started again (``finally``).
* SQLite ``database is locked``: another connection holds the write lock for
  longer than the busy timeout: the API answers UNAVAILABLE, the worker
  retries, nothing is lost.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
import sqlalchemy as sa

from tests.support.chaos import SUCCESS_MODES, running_chaos
from tests.support.faults import final_statuses, report
from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.server import make_org_and_keys, running_server
from webhooks_client import AdminClient, PublisherClient, WebhooksClientError
from webhooks_service.storage import db

pytestmark = [pytest.mark.faults]

FAST = {"retry_schedule": (0.2, 0.2, 0.2, 0.2), "poll_interval": 0.2}


class Publisher(threading.Thread):
    """Publishes ``ids`` one by one, retrying each (same id) until accepted;
    counts the status codes it got."""

    def __init__(self, target: str, key: str, org_id: str, ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.target, self.key, self.org_id, self.ids = target, key, org_id, ids
        self.codes: collections.Counter[str] = collections.Counter()
        self.accepted = 0

    def run(self) -> None:
        with PublisherClient(self.target, self.key, timeout=10) as pub:
            for event_id in self.ids:
                while True:
                    try:
                        pub.publish_event(
                            self.org_id, "reward.claimed", example("reward.claimed"), id=event_id
                        )
                    except WebhooksClientError as exc:
                        self.codes[exc.code.name] += 1
                        time.sleep(0.1)
                        continue
                    self.codes["OK"] += 1
                    self.accepted += 1
                    break
                time.sleep(0.005)


def _pg_ctl() -> list[str] | None:
    tool = shutil.which("pg_ctlcluster")
    if tool is None or not os.path.isdir("/etc/postgresql"):
        return None
    versions = sorted(os.listdir("/etc/postgresql"))
    return [tool, "--skip-systemctl-redirect", versions[-1], "main"] if versions else None


def _accepting(url: str) -> bool:
    engine = sa.create_engine(url, pool_pre_ping=False)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


@contextmanager
def postgres_down(ctl: list[str], url: str) -> Iterator[None]:
    """Stop the local PostgreSQL cluster; always start it again and wait for it."""
    subprocess.run([*ctl, "stop", "-m", "fast"], check=True, capture_output=True, timeout=30)
    try:
        yield
    finally:
        subprocess.run([*ctl, "start"], check=True, capture_output=True, timeout=60)
        eventually(lambda: _accepting(url), 60, "PostgreSQL to accept connections again")


def _deliver_everything(srv_engine: sa.Engine, ids: list[str], timeout: float) -> dict[str, str]:
    eventually(
        lambda: list(final_statuses(srv_engine).values()).count("delivered") == len(ids),
        timeout,
        "every event to be delivered",
    )
    return final_statuses(srv_engine)


# serial: it restarts the shared PostgreSQL, so `make pytest` runs it alone, after the rest
# (the SQLite test below holds a lock on its own file only: it runs in the parallel part)
@pytest.mark.serial
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_restart_while_events_flow(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ctl = _pg_ctl()
    if ctl is None:
        pytest.skip("no pg_ctlcluster here: cannot restart the PostgreSQL server")
    caplog.set_level(logging.WARNING)
    events = 300
    ids = [f"pg-{i}" for i in range(events)]
    with (
        running_chaos(lambda _e, _n: "ok") as rx,
        running_server(database_url, FAST, worker=True) as srv,
    ):
        org_id, keys = make_org_and_keys(srv.engine)
        with AdminClient(srv.target, keys["all"], timeout=10) as admin:
            admin.put_webhook_config(url=rx.url(), event_types=["*"])
            publisher = Publisher(srv.target, keys["events:publish"], org_id, ids)
            gateway_status = 0
            with _maybe_gateway(srv.target) as rest:
                publisher.start()
                eventually(lambda: publisher.accepted >= 80, 30, "events to flow")
                with postgres_down(ctl, database_url):
                    down_at = time.monotonic()
                    with pytest.raises(WebhooksClientError) as err:
                        admin.list_webhook_configs()
                    assert err.value.code is grpc.StatusCode.UNAVAILABLE
                    if rest is not None:
                        gateway_status = rest.get(
                            "/webhooks/configs", headers={"authorization": f"Bearer {keys['all']}"}
                        ).status_code
                    eventually(lambda: publisher.codes["UNAVAILABLE"] > 0, 10, "a refused publish")
                    time.sleep(max(0.0, 2.0 - (time.monotonic() - down_at)))
                outage = time.monotonic() - down_at
            publisher.join(90)
            assert not publisher.is_alive()
            states = _deliver_everything(srv.engine, ids, 60)
    seen = rx.by_event()
    assert set(publisher.codes) <= {"OK", "UNAVAILABLE"}, publisher.codes
    assert states == dict.fromkeys(ids, "delivered")
    assert set(seen) == set(ids)
    # Records written late, not dropped: no delivery attempted again after its lease.
    assert all(sum(h.mode in SUCCESS_MODES for h in hs) == 1 for hs in seen.values())
    if gateway_status:
        assert gateway_status == 503
    claim_failures = sum("claiming deliveries failed" in r.getMessage() for r in caplog.records)
    report(
        "PostgreSQL stopped and started while events flow",
        database_url,
        events_sent=events,
        delivered=len(states),
        duplicated=sum(sum(h.mode in SUCCESS_MODES for h in hs) > 1 for hs in seen.values()),
        lost=events - len(set(seen) & set(ids)),
        outage_seconds=round(outage, 1),
        publish_answers=dict(publisher.codes),
        gateway_status_while_down=gateway_status or "not run",
        worker_claim_failures_logged=claim_failures,
    )


@contextmanager
def _maybe_gateway(target: str) -> Iterator[httpx.Client | None]:
    """The REST gateway in front of ``target`` when Envoy is installed, else None."""
    try:
        from tests.support.envoy import running_gateway

        gateway = running_gateway([target])
        gw = gateway.__enter__()
    except (pytest.skip.Exception, pytest.fail.Exception):
        yield None
        return
    try:
        with httpx.Client(base_url=gw.base_url, timeout=10) as client:
            yield client
    finally:
        gateway.__exit__(None, None, None)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_locked_longer_than_the_busy_timeout(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 300)
    caplog.set_level(logging.WARNING)
    events = 200
    ids = [f"lk-{i}" for i in range(events)]
    path = Path(database_url.removeprefix("sqlite:///"))
    with (
        running_chaos(lambda _e, _n: "ok") as rx,
        running_server(database_url, FAST, worker=True) as srv,
    ):
        org_id, keys = make_org_and_keys(srv.engine)
        with AdminClient(srv.target, keys["all"], timeout=10) as admin:
            admin.put_webhook_config(url=rx.url(), event_types=["*"])
            publisher = Publisher(srv.target, keys["events:publish"], org_id, ids)
            publisher.start()
            eventually(lambda: publisher.accepted >= 50, 30, "events to flow")
            holder = sqlite3.connect(path, timeout=5, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # the write lock, held for 2 s
            try:
                locked_at = time.monotonic()
                with pytest.raises(WebhooksClientError) as err:
                    admin.put_webhook_config(url=rx.url("/other"), event_types=["*"])
                assert err.value.code is grpc.StatusCode.UNAVAILABLE
                eventually(lambda: publisher.codes["UNAVAILABLE"] > 0, 10, "a refused publish")
                time.sleep(max(0.0, 2.0 - (time.monotonic() - locked_at)))
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            publisher.join(60)
            assert not publisher.is_alive()
            states = _deliver_everything(srv.engine, ids, 60)
    seen = rx.by_event()
    assert set(publisher.codes) <= {"OK", "UNAVAILABLE"}, publisher.codes
    assert states == dict.fromkeys(ids, "delivered")
    assert set(seen) == set(ids)
    # Records written late, not dropped: no delivery attempted again after its lease.
    assert all(sum(h.mode in SUCCESS_MODES for h in hs) == 1 for hs in seen.values())
    report(
        "SQLite write lock held past the busy timeout",
        database_url,
        events_sent=events,
        delivered=len(states),
        duplicated=sum(sum(h.mode in SUCCESS_MODES for h in hs) > 1 for hs in seen.values()),
        lost=events - len(set(seen) & set(ids)),
        lock_seconds=2.0,
        busy_timeout_ms=300,
        publish_answers=dict(publisher.codes),
        worker_db_errors_logged=sum(
            "failed" in r.getMessage() and r.name.startswith("webhooks_service.delivery")
            for r in caplog.records
        ),
    )
