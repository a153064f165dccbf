"""Deleting or disabling an endpoint stops it (issue 27.2).

2,000 deliveries queued, the endpoint answering in 100 ms: after
``DeleteWebhookConfig`` returned, 664-680 requests still arrived (the last
4.3 s later), signed with the secret the delete erased; after a disable,
632-648. Now nothing starts after the call returns in the process that
served it, what waits is cancelled (deleted: ``cancelled`` in the log;
disabled: "endpoint disabled: not attempted"), attempts in flight finish and
are logged, and on PostgreSQL a separate ``webhooks worker`` process stops
within 1 s (NOTIFY).

Both databases; the delete through a real Envoy (REST), the disable over
gRPC, and the separate worker process on PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.support.envoy import running_gateway
from tests.support.faults import org_with_endpoint, publish, worker_process
from tests.support.polling import eventually
from tests.support.receiver import Receiver, Reply, running_receiver
from tests.support.server import RunningServer, running_server
from webhooks_client import AdminClient
from webhooks_service.storage.models import Delivery, DeliveryAttempt

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

EVENTS = 2000
SLOW = Reply(200, delay=0.1)
# A request sent just before the call returned may reach the receiver a moment later.
IN_TRANSIT = 0.2


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with running_receiver() as r:
        r.program("/slow", SLOW)
        yield r


def _statuses(srv: RunningServer) -> dict[str, int]:
    with srv.engine.connect() as conn:
        rows = conn.execute(sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status))
        return {status: int(n) for status, n in rows}


def _logged(srv: RunningServer) -> dict[str, int]:
    """Deliveries per outcome of their last logged attempt."""
    with srv.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                DeliveryAttempt.outcome, sa.func.count(sa.distinct(DeliveryAttempt.delivery_id))
            ).group_by(DeliveryAttempt.outcome)
        )
        return {outcome: int(n) for outcome, n in rows}


def _config_id(srv: RunningServer) -> str:
    with srv.engine.connect() as conn:
        return str(conn.execute(sa.select(Delivery.config_id).limit(1)).scalar_one())


def _late(rx: Receiver, returned_at: float, allowance: float) -> list[float]:
    """Arrival delays of requests that arrived after ``returned_at + allowance``."""
    return [
        round(r.at - returned_at, 3) for r in rx.requests("/slow") if r.at > returned_at + allowance
    ]


def _queue(srv: RunningServer, rx: Receiver) -> tuple[str, dict[str, str]]:
    org_id, keys = org_with_endpoint(srv.engine, srv.settings.database_url, rx.url("/slow"))
    publish(srv.target, keys["events:publish"], org_id, [f"evt_{i}" for i in range(EVENTS)])
    rx.wait_for(20, "/slow", timeout=30)  # the worker is delivering
    return org_id, keys


@pytest.mark.gateway
def test_delete_over_rest_stops_every_attempt_at_once(database_url: str, rx: Receiver) -> None:
    with running_server(database_url, worker=True) as srv, running_gateway([srv.target]) as gw:
        _, keys = _queue(srv, rx)
        config_id = _config_id(srv)
        resp = httpx.delete(
            f"{gw.base_url}/webhooks/configs/{config_id}",
            headers={"authorization": f"Bearer {keys['all']}"},
            timeout=30,
        )
        returned_at = time.time()
        assert resp.status_code == 200, resp.text
        seen_at_return = rx.count("/slow")
        eventually(lambda: _settled(srv), 15, "every delivery to end")
        # Nothing more can come: a claim after the delete found nothing, and the
        # worker has nothing in flight or waiting (its own state, not a sleep).
        srv.quiet()
        settled = _statuses(srv)
        late = _late(rx, returned_at, IN_TRANSIT)
        print(f"\nrequests: {seen_at_return} before the delete returned, {len(late)} after")
        assert late == []  # before: 664-680, the last 4.3 s later
        # in flight at the delete: finished and logged as delivered; the rest cancelled
        delivered = settled.get("delivered", 0)
        assert delivered == rx.count("/slow")
        assert settled.get("cancelled", 0) == EVENTS - delivered
        logged = _logged(srv)
        assert logged.get("delivered", 0) == delivered
        assert logged.get("cancelled", 0) == EVENTS - delivered  # each ends with a log entry


def _settled(srv: RunningServer) -> dict[str, int] | None:
    statuses = _statuses(srv)
    return statuses if "pending" not in statuses else None


def test_disable_over_grpc_stops_every_attempt_at_once(database_url: str, rx: Receiver) -> None:
    with running_server(database_url, worker=True) as srv:
        _, keys = _queue(srv, rx)
        config_id = _config_id(srv)
        with AdminClient(srv.target, keys["all"]) as admin:
            admin.put_webhook_config(
                id=config_id, url=rx.url("/slow"), event_types=["*"], enabled=False
            )
            returned_at = time.time()
        eventually(lambda: _settled(srv), 15, "every delivery to end")
        srv.quiet()  # nothing in flight or waiting in the worker: nothing more comes
        settled = _statuses(srv)
        late = _late(rx, returned_at, IN_TRANSIT)
        print(f"\n{len(late)} requests after the disable returned")
        assert late == []  # before: 632-648
        delivered = settled.get("delivered", 0)
        assert delivered == rx.count("/slow")
        assert settled.get("failed", 0) == EVENTS - delivered  # not attempted


@pytest.mark.postgres
def test_a_separate_worker_process_stops_within_a_second(
    postgres_url: str, rx: Receiver, tmp_path: Path
) -> None:
    from tests.conftest import _truncate_all

    _truncate_all(postgres_url)
    with (
        running_server(postgres_url) as srv,  # the API alone; the worker is another process
        worker_process(
            postgres_url, tmp_path, {"ALLOWED_TARGET_NETWORKS": "127.0.0.0/8", "LOG_LEVEL": "INFO"}
        ) as worker,
    ):
        _, keys = _queue(srv, rx)
        config_id = _config_id(srv)
        with AdminClient(srv.target, keys["all"]) as admin:
            admin.delete_webhook_config(config_id)
            returned_at = time.time()
        eventually(lambda: _settled(srv), 15, "every delivery to end")
        # Nothing more can come once the worker has dropped what waited of the
        # configuration (its log says so, delivery/worker.py stop_config) and has
        # stopped: a graceful stop finishes and records what is in flight. The
        # signals, not a sleep.
        eventually(
            lambda: f"deleted {config_id}: " in worker.log(), 15, "the worker to drop the rest"
        )
        assert worker.terminate() == 0
        settled = _statuses(srv)
        late = _late(rx, returned_at, 1.0)
        print(
            f"\nseparate worker: {len(_late(rx, returned_at, 0.0))} requests after the delete "
            f"returned, {len(late)} more than 1 s after"
        )
        assert late == []
        delivered = settled.get("delivered", 0)
        assert delivered == rx.count("/slow")
        assert settled.get("cancelled", 0) == EVENTS - delivered
