"""ListDeliveryLogs: keyset pages, filters and page tokens, on both databases.

Attempt rows are inserted directly (tests/support/seed.py); the delivery
worker is their real writer.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support.fixtures import OrgKeys, org, other_org, server  # noqa: F401
from tests.support.seed import seed_attempts
from tests.support.server import RunningServer
from webhooks.v1 import admin_pb2
from webhooks_client import (
    AdminClient,
    DeliveryLog,
    DeliveryLogPage,
    DeliveryOutcome,
    InvalidArgumentError,
)
from webhooks_service.storage import logs as log_store
from webhooks_service.storage.logs import LogFilters


@dataclass
class Seeded:
    client: AdminClient
    configs: list[str]
    ids: list[int]  # attempt ids, oldest first

    def expected(self, ids: list[int] | None = None) -> list[str]:
        return [f"att_{i}" for i in sorted(ids if ids is not None else self.ids, reverse=True)]


@pytest.fixture
def seeded(server: RunningServer, org: OrgKeys) -> Iterator[Seeded]:  # noqa: F811
    with AdminClient(server.target, org.all) as client:
        configs = [
            client.put_webhook_config(url=f"https://example.com/{i}", event_types=["*"]).config.id
            for i in range(2)
        ]
        ids = seed_attempts(server.engine, org.id, configs, 23)
        yield Seeded(client, configs, ids)


def walk(client: AdminClient, page_size: int, **filters: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        page = client.list_delivery_logs(page_size=page_size, page_token=token, **filters)
        pages.append([entry.id for entry in page.logs])
        token = page.next_page_token
        if not token:
            return pages


def test_walk_returns_every_row_once_newest_first(seeded: Seeded) -> None:
    pages = walk(seeded.client, 5)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [i for p in pages for i in p] == seeded.expected()
    assert [e.id for e in seeded.client.iter_delivery_logs(page_size=4)] == seeded.expected()


def test_exact_multiple_of_page_size_ends_without_empty_page(seeded: Seeded) -> None:
    pages = walk(seeded.client, 23)
    assert len(pages) == 1 and len(pages[0]) == 23


def test_walk_is_stable_while_rows_are_inserted(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    seeded: Seeded,
) -> None:
    seen: list[str] = []
    token = ""
    new_ids: list[int] = []
    while True:
        page = seeded.client.list_delivery_logs(page_size=4, page_token=token)
        seen.extend(e.id for e in page.logs)
        # Deliveries keep happening while the admin pages through the log.
        new_ids += seed_attempts(server.engine, org.id, seeded.configs, 2)
        token = page.next_page_token
        if not token:
            break
    assert seen == seeded.expected()
    fresh = [e.id for e in seeded.client.iter_delivery_logs(page_size=50)]
    assert fresh == seeded.expected(seeded.ids + new_ids)


def test_entries_carry_the_attempt(server: RunningServer, seeded: Seeded) -> None:  # noqa: F811
    newest = seeded.client.list_delivery_logs(page_size=1).logs[0]
    with server.engine.connect() as conn:
        payload = conn.execute(
            sa.text("SELECT payload FROM events WHERE event_id = :e"), {"e": newest.event_id}
        ).scalar_one()
    assert newest.request_body == payload
    assert json.loads(newest.request_body)["id"] == newest.event_id
    assert newest.delivery_id.startswith("dlv_")
    assert newest.attempt == 1
    assert newest.url == "https://example.com/hook"
    assert newest.attempted_at is not None
    scheduled = next(
        e
        for e in seeded.client.iter_delivery_logs()
        if e.outcome == DeliveryOutcome.RETRY_SCHEDULED
    )
    assert scheduled.next_attempt_at is not None
    delivered = next(
        e for e in seeded.client.iter_delivery_logs() if e.outcome == DeliveryOutcome.DELIVERED
    )
    assert delivered.next_attempt_at is None
    assert delivered.response_status_code == 200


def test_log_entries_are_python_objects(seeded: Seeded) -> None:
    """Dataclasses with enums that print as words and aware UTC datetimes (issue 14)."""
    page = seeded.client.list_delivery_logs(page_size=3)
    assert isinstance(page, DeliveryLogPage) and isinstance(page.logs, tuple)
    entry = page.logs[0]
    assert isinstance(entry, DeliveryLog) and dataclasses.is_dataclass(entry)
    assert isinstance(entry.outcome, DeliveryOutcome)
    assert f"{entry.outcome}" == str(entry.outcome) == entry.outcome.name.lower()
    assert int(entry.outcome) == admin_pb2.Outcome.Value(f"OUTCOME_{entry.outcome.name}")
    assert isinstance(entry.attempted_at, datetime) and entry.attempted_at.tzinfo is UTC
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.attempt = 2  # type: ignore[misc]
    only_failed = seeded.client.list_delivery_logs(outcome=DeliveryOutcome.FAILED).logs
    assert only_failed and {e.outcome for e in only_failed} == {DeliveryOutcome.FAILED}


def test_each_filter_narrows(seeded: Seeded) -> None:
    everything = list(seeded.client.iter_delivery_logs(page_size=500))
    assert len(everything) == 23

    def ids(**filters: str) -> list[str]:
        return [i for page in walk(seeded.client, 3, **filters) for i in page]

    def expect(predicate: object) -> list[str]:
        return [e.id for e in everything if predicate(e)]  # type: ignore[operator]

    config = seeded.configs[1]
    assert ids(config_id=config) == expect(lambda e: e.config_id == config)
    assert 0 < len(ids(config_id=config)) < 23
    assert ids(event_type="user.authenticated") == expect(
        lambda e: e.event_type == "user.authenticated"
    )
    assert 0 < len(ids(event_type="user.authenticated")) < 23
    failed = [e.id for e in seeded.client.iter_delivery_logs(outcome="failed")]
    assert failed == expect(lambda e: e.outcome == DeliveryOutcome.FAILED)
    assert 0 < len(failed) < 23
    one = everything[7]
    assert ids(event_id=one.event_id) == [one.id]
    both = ids(config_id=config, event_type="reward.claimed")
    assert both == expect(lambda e: e.config_id == config and e.event_type == "reward.claimed")
    assert ids(config_id="whc_nothere") == []


def test_page_size_default_and_range(server: RunningServer, org: OrgKeys, seeded: Seeded) -> None:  # noqa: F811
    """One rule on every list: 0 (default) to 500; outside, the same field violation."""
    seed_attempts(server.engine, org.id, seeded.configs, 40)
    assert len(seeded.client.list_delivery_logs().logs) == 50
    assert len(seeded.client.list_delivery_logs(page_size=500).logs) == 63
    for size in (-1, 501, 100_000):
        for call in (seeded.client.list_delivery_logs, seeded.client.list_webhook_configs):
            with pytest.raises(InvalidArgumentError) as info:
                call(page_size=size)
            (violation,) = info.value.field_violations
            assert violation.field == "page_size"
            assert violation.description.startswith("must be between 0 and 500 (0 or absent")
            assert violation.description.endswith(f"got {size}")
            assert "page_size" in info.value.message and "between 0 and 500" in info.value.message


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"config_id": "bogus"}, "config_id"),
        ({"config_id": "whc_…"}, "config_id"),
        ({"event_id": "a b"}, "event_id"),
        ({"event_type": "reward"}, "event_type"),
    ],
)
def test_malformed_id_filters_are_refused_like_path_ids(
    seeded: Seeded, filters: dict[str, str], field: str
) -> None:
    """The one id rule: a malformed id is INVALID_ARGUMENT naming the shape (as for
    RetryDelivery's path id); a well-formed unknown one is an empty page."""
    with pytest.raises(InvalidArgumentError) as info:
        seeded.client.list_delivery_logs(**filters)  # type: ignore[arg-type]
    assert [v.field for v in info.value.field_violations] == [field]
    if "…" in filters.get("config_id", ""):
        assert "placeholder" in info.value.field_violations[0].description
    assert seeded.client.list_delivery_logs(config_id="whc_0000000000").logs == ()


def _token(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "!!!",
        _token([1, 2]),
        _token({"k": 5, "b": "0000000000000000"}),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "A" * 2000,
    ],
)
def test_garbage_page_token_is_invalid_argument(seeded: Seeded, token: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        seeded.client.list_delivery_logs(page_token=token)
    assert [v.field for v in info.value.field_violations] == ["page_token"]


def test_token_is_bound_to_filters_and_organisation(
    server: RunningServer,  # noqa: F811
    other_org: OrgKeys,  # noqa: F811
    seeded: Seeded,
) -> None:
    token = seeded.client.list_delivery_logs(page_size=2).next_page_token
    assert token
    with pytest.raises(InvalidArgumentError):
        seeded.client.list_delivery_logs(page_token=token, outcome="failed")
    with pytest.raises(InvalidArgumentError):
        seeded.client.list_delivery_logs(page_token=token, config_id=seeded.configs[0])
    with AdminClient(server.target, other_org.read) as other, pytest.raises(InvalidArgumentError):
        other.list_delivery_logs(page_token=token)
    # The same token with the same (absent) filters continues the walk.
    assert len(seeded.client.list_delivery_logs(page_size=2, page_token=token).logs) == 2


def test_other_organisation_sees_no_logs(
    server: RunningServer,  # noqa: F811
    other_org: OrgKeys,  # noqa: F811
    seeded: Seeded,
) -> None:
    with AdminClient(server.target, other_org.read) as other:
        assert list(other.iter_delivery_logs()) == []
        assert list(other.iter_delivery_logs(config_id=seeded.configs[0])) == []


def test_unknown_filter_values_are_invalid(seeded: Seeded) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        seeded.client.list_delivery_logs(event_type="reward.nosuch")
    assert [v.field for v in info.value.field_violations] == ["event_type"]
    with pytest.raises(InvalidArgumentError) as info:
        seeded.client.list_delivery_logs(outcome=99)
    assert [v.field for v in info.value.field_violations] == ["outcome"]


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        (LogFilters(), "ix_attempts_org"),
        (LogFilters(config_id="whc_x"), "ix_attempts_org_config"),
        (LogFilters(event_id="evt_x"), "ix_attempts_org_event"),
        (LogFilters(event_type="reward.claimed"), "ix_attempts_org_type"),
        (LogFilters(outcome="dead"), "ix_attempts_org_outcome"),
    ],
)
def test_sqlite_plan_uses_the_attempt_indexes(
    sqlite_template: object, filters: LogFilters, index: str
) -> None:
    from webhooks_service.storage import db

    engine = db.create_engine(f"sqlite:///{sqlite_template}")
    try:
        query = log_store.page_query("org_x", filters, before_id=1000, limit=51)
        compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
        with engine.connect() as conn:
            plan = " | ".join(
                str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
            )
    finally:
        engine.dispose()
    assert f"USING INDEX {index} " in plan or f"USING COVERING INDEX {index} " in plan, plan
    assert "SCAN delivery_attempts" not in plan.replace(f"USING INDEX {index}", ""), plan
    # The only sort is the outer one, over the page's (at most 501) rows.
    assert plan.count("TEMP B-TREE") <= 1 and "SEARCH events USING INTEGER PRIMARY KEY" in plan


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("filters", "index"),
    [
        (LogFilters(), "ix_attempts_org"),
        (LogFilters(config_id="whc_x"), "ix_attempts_org_config"),
        (LogFilters(event_id="evt_x"), "ix_attempts_org_event"),
        (LogFilters(event_type="reward.claimed"), "ix_attempts_org_type"),
        (LogFilters(outcome="dead"), "ix_attempts_org_outcome"),
    ],
)
def test_postgres_plan_seeks_the_attempt_indexes(
    postgres_url: str, filters: LogFilters, index: str
) -> None:
    """The page is an index range scan on (org[, filter], id < cursor) whose order
    is the page's order: the primary key (filtered by org) cannot serve it."""
    from webhooks_service.storage import db

    engine = db.create_engine(postgres_url)
    try:
        query = log_store.page_query(
            "org_x", filters, before_id=1000, limit=51, dialect="postgresql"
        )
        compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
            plan = " | ".join(str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {compiled}"))
    finally:
        engine.dispose()
    assert f"Index Scan Backward using {index} on delivery_attempts" in plan, plan
    assert "id < 1000" in plan.split("Index Cond:")[1].split("|")[0], plan
    assert "pk_delivery_attempts" not in plan, plan
