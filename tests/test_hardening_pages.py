"""Bounded log pages (issue #13, item 1): a byte budget per page, BASIC/FULL
views, and a gateway whose transcoder buffer fits a full default page.

Before: one ListDeliveryLogs page of 250 KB events was page_size x 250 KB
(125 MB at 500), and through REST even the default page of 50 was a 500
("transcoder's internal buffer size exceeds the configured limit").
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from tests.support.envoy import running_gateway
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks.v1 import admin_pb2, admin_pb2_grpc
from webhooks_client import AdminClient, AsyncAdminClient
from webhooks_service.config import Settings
from webhooks_service.core.server_keys import keyring
from webhooks_service.errors import ConfigurationError
from webhooks_service.storage.models import Delivery, DeliveryAttempt, Event, WebhookConfig

BIG = 250 * 1024
COUNT = 30
BUDGET = 4 * 1024 * 1024


def seed_big_events(engine: sa.Engine, org_id: str, count: int, size: int) -> list[int]:
    """``count`` events of ``size`` bytes, each with one delivery and one logged
    attempt; the attempt ids, newest first."""
    now = datetime.now(UTC)
    ids: list[int] = []
    with engine.begin() as conn:
        conn.execute(
            sa.insert(WebhookConfig),
            {
                "id": "whc_big",
                "organisation_id": org_id,
                "url": "https://example.com/big",
                "event_types": ["*"],
                "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "enabled": True,
                "description": "",
                "created_at": now,
                "updated_at": now,
            },
        )
        for n in range(count):
            body = json.dumps({"id": f"evt_{n}", "data": {"blob": "x" * size}})
            event_pk = conn.execute(
                sa.insert(Event).returning(Event.pk),
                {
                    "organisation_id": org_id,
                    "event_id": f"evt_{n}",
                    "event_type": "reward.claimed",
                    "occurred_at": now,
                    "payload": body,
                    "created_at": now,
                },
            ).scalar_one()
            delivery = conn.execute(
                sa.insert(Delivery).returning(Delivery.id),
                {
                    "organisation_id": org_id,
                    "event_pk": event_pk,
                    "config_id": "whc_big",
                    "status": "delivered",
                    "attempts": 1,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                },
            ).scalar_one()
            ids.append(
                conn.execute(
                    sa.insert(DeliveryAttempt).returning(DeliveryAttempt.id),
                    {
                        "organisation_id": org_id,
                        "delivery_id": delivery,
                        "event_pk": event_pk,
                        "event_id": f"evt_{n}",
                        "event_type": "reward.claimed",
                        "config_id": "whc_big",
                        "attempt": 1,
                        "url": "https://example.com/big",
                        "response_status_code": 200,
                        "outcome": "delivered",
                        "attempted_at": now + timedelta(seconds=n),
                    },
                ).scalar_one()
            )
    return ids[::-1]


@pytest.fixture
def big(database_url: str) -> Iterator[tuple[RunningServer, str, list[str]]]:
    with running_server(database_url) as srv:
        org_id, keys = make_org_and_keys(srv.engine)
        ids = seed_big_events(srv.engine, org_id, COUNT, BIG)
        public = keyring(srv.engine).ids
        yield srv, keys["all"], [public.attempt(i) for i in ids]


@pytest.mark.gateway
def test_rest_default_page_of_250_kb_events_is_200_and_bounded(
    big: tuple[RunningServer, str, list[str]],
) -> None:
    srv, key, expected = big
    seen: list[str] = []
    sizes: list[int] = []
    with (
        running_gateway([srv.target]) as gw,
        httpx.Client(
            base_url=gw.base_url, headers={"authorization": f"Bearer {key}"}, timeout=30
        ) as rest,
    ):
        token = ""
        for _ in range(COUNT):
            params = {"page_token": token} if token else {}
            resp = rest.get("/webhooks/logs", params=params)  # the default page size, 50
            assert resp.status_code == 200, resp.text[:300]
            page = resp.json()
            sizes.append(len(page["logs"]))
            assert all(len(e["request_body"]) > BIG for e in page["logs"])
            seen += [e["id"] for e in page["logs"]]
            token = page["next_page_token"]
            if not token:
                break
        basic = rest.get("/webhooks/logs", params={"view": "DELIVERY_LOG_VIEW_BASIC"})
        assert basic.status_code == 200, basic.text[:300]
        assert [e["id"] for e in basic.json()["logs"]] == expected  # all 30, no bodies
        assert {e["request_body"] for e in basic.json()["logs"]} == {""}
    print(f"\nREST pages of 250 KB events (default page size): {sizes}")
    assert seen == expected  # every entry once, newest first, across budget-cut pages
    # 30 entries of ~250 KB do not fit one 4 MiB page: it stops early (~16)
    assert 1 <= sizes[0] < COUNT and sizes[0] * BIG <= BUDGET + BIG, sizes


def test_grpc_page_stops_at_the_byte_budget(big: tuple[RunningServer, str, list[str]]) -> None:
    srv, key, expected = big
    with AdminClient(srv.target, key) as admin:
        stub = admin_pb2_grpc.WebhookAdminStub(admin._channel)
        raw = stub.ListDeliveryLogs(
            admin_pb2.ListDeliveryLogsRequest(page_size=500), metadata=admin._metadata
        )
        assert raw.next_page_token
        assert raw.ByteSize() <= BUDGET + BIG + 4096, raw.ByteSize()  # the message on the wire
        page = admin.list_delivery_logs(page_size=500)
        assert [e.id for e in page.logs] == expected[: len(page.logs)]


def test_basic_view_leaves_out_the_bodies(big: tuple[RunningServer, str, list[str]]) -> None:
    srv, key, expected = big
    with AdminClient(srv.target, key) as admin:
        page = admin.list_delivery_logs(page_size=500, bodies=False)
        assert [e.id for e in page.logs] == expected  # all 30 fit: no bodies
        assert not page.next_page_token
        assert all(e.request_body == "" and e.response_body == "" for e in page.logs)
        assert all(e.url and e.event_id and e.outcome for e in page.logs)
        assert sum(len(e.url) + len(e.event_id) + len(e.error) for e in page.logs) < 30 * 1024
        full = admin.list_delivery_logs(page_size=1)
        assert len(full.logs[0].request_body) > BIG  # FULL stays the default


def test_the_asyncio_client_asks_for_the_basic_view_too(
    big: tuple[RunningServer, str, list[str]],
) -> None:
    srv, key, expected = big

    async def read() -> tuple[list[str], list[int], int]:
        async with AsyncAdminClient(srv.target, key) as admin:
            page = await admin.list_delivery_logs(page_size=500, bodies=False)
            walked = [e async for e in admin.iter_delivery_logs(page_size=500, bodies=False)]
            full = await admin.list_delivery_logs(page_size=1)
        sizes = [len(e.request_body) + len(e.response_body) for e in [*page.logs, *walked]]
        return [e.id for e in page.logs], sizes, len(full.logs[0].request_body)

    ids, sizes, full_body = asyncio.run(read())
    assert ids == expected  # all 30 fit one page: no bodies
    assert sizes == [0] * (2 * len(expected))
    assert full_body > BIG  # FULL stays the default


def test_page_budget_setting_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="at least 65536"):
        Settings.load(env={"WEBHOOKS_LOG_PAGE_MAX_BYTES": "1000"})
    assert Settings.load(env={"WEBHOOKS_LOG_PAGE_MAX_BYTES": "65536"}).log_page_max_bytes == 65536
