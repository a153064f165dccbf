"""SIGKILL the serving process mid-delivery: after a restart every event
arrives at least once and nothing is lost (leases expire and the deliveries
run again). SQLite and PostgreSQL; a short lease keeps it quick."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Reply, running_receiver
from tests.support.serve_process import read_target
from tests.support.server import make_org_and_keys
from tests.support.server import test_settings as make_settings
from webhooks_client import PublisherClient, make_publish_request
from webhooks_service.core import configs
from webhooks_service.storage import db
from webhooks_service.storage.models import utcnow

pytestmark = [pytest.mark.faults, pytest.mark.slow]

EVENTS = 2000
WEBHOOKS = os.path.join(os.path.dirname(sys.executable), "webhooks")


@contextmanager
def serving(database_url: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``webhooks serve`` as a child process; yields it and its gRPC target."""
    env = {
        **os.environ,
        "WEBHOOKS_DATABASE_URL": database_url,
        "WEBHOOKS_GRPC_LISTEN": "127.0.0.1:0",
        "WEBHOOKS_METRICS_LISTEN": "127.0.0.1:0",
        "WEBHOOKS_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
        "WEBHOOKS_LEASE_SECONDS": "2",
        "WEBHOOKS_POLL_INTERVAL": "0.2",
        "WEBHOOKS_RETRY_SCHEDULE": "0.1,0.1,0.1",
        "WEBHOOKS_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [WEBHOOKS, "serve"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        target = read_target(proc)  # its stderr is drained from then on
        assert target, "webhooks serve did not start"
        yield proc, target
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT status, count(*) FROM deliveries GROUP BY status"))
        return {r[0]: r[1] for r in rows}


def test_sigkill_while_2000_events_are_in_flight_loses_nothing(database_url: str) -> None:
    engine = db.create_engine(database_url)
    org_id, keys = make_org_and_keys(engine)
    with running_receiver() as rx:
        rx.program("/hook", Reply(delay=0.005))
        configs.put_config(
            engine,
            make_settings(database_url),
            org_id,
            config_id="",
            url=rx.url("/hook"),
            event_types=["*"],
            secret=None,
            enabled=None,
            description="",
        )
        with serving(database_url) as (proc, target):
            with PublisherClient(target, keys["events:publish"]) as pub:
                for start in range(0, EVENTS, 500):
                    results = pub.publish_events(
                        [
                            make_publish_request(
                                org_id, "reward.claimed", example("reward.claimed"), id=f"e{i}"
                            )
                            for i in range(start, start + 500)
                        ]
                    )
                    assert all(r.deliveries == 1 for r in results)
            rx.wait_for(300, "/hook", timeout=30)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        killed_at = utcnow()
        before = statuses(engine)
        assert before.get("delivered", 0) < EVENTS, "everything was delivered before the kill"
        assert before.get("pending", 0) > 0

        with serving(database_url) as (proc, _target):
            eventually(
                lambda: statuses(engine).get("delivered", 0) >= EVENTS,
                90,
                "every event delivered after the restart",
                interval=0.1,
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0

        received = {r.headers["webhook-id"] for r in rx.requests("/hook")}
        assert received == {f"e{i}" for i in range(EVENTS)}  # 0 lost
        assert statuses(engine) == {"delivered": EVENTS}
        with engine.connect() as conn:
            logged = conn.execute(
                sa.text(
                    "SELECT count(DISTINCT delivery_id) FROM delivery_attempts "
                    "WHERE outcome = 'delivered'"
                )
            ).scalar()
            late = conn.execute(
                sa.text("SELECT count(*) FROM delivery_attempts WHERE attempted_at >= :t"),
                {"t": killed_at.replace(tzinfo=None) if db.is_sqlite(engine) else killed_at},
            ).scalar()
        assert logged == EVENTS  # every delivery has its logged, successful attempt
        assert late and late > 0  # the restarted process did part of the work
    engine.dispose()
