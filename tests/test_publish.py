"""PublishEvent(s) over real gRPC against SQLite and PostgreSQL: who may
publish, validation, the exact payload, fan-out and idempotency."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from tests.support.clients import ClientFactory, client_kind, publisher_client  # noqa: F401
from tests.support.fixtures import OrgKeys, org, other_org, server  # noqa: F401
from tests.support.payloads import example
from tests.support.server import RunningServer
from webhooks_client import (
    AdminClient,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PublisherClient,
    make_publish_request,
)


@pytest.fixture
def publisher(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    publisher_client: ClientFactory,  # noqa: F811
) -> Iterator[PublisherClient]:
    """The blocking client, and the asyncio one (same tests)."""
    with publisher_client(server.target, org.publish) as client:
        yield client


@pytest.fixture
def admin(server: RunningServer, org: OrgKeys) -> Iterator[AdminClient]:  # noqa: F811
    with AdminClient(server.target, org.all) as client:
        yield client


def payloads(server: RunningServer) -> dict[str, str]:  # noqa: F811
    with server.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT event_id, payload FROM events")).all()
    return {r.event_id: r.payload for r in rows}


def delivery_configs(server: RunningServer, event_id: str) -> set[str]:  # noqa: F811
    with server.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT d.config_id FROM deliveries d JOIN events e ON e.pk = d.event_pk "
                "WHERE e.event_id = :e"
            ),
            {"e": event_id},
        ).scalars()
        return set(rows)


def test_payload_is_the_exact_json_body(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    publisher: PublisherClient,
) -> None:
    when = datetime(2026, 11, 27, 10, 15, 0, 250000, tzinfo=UTC)
    # given out of order, a 64-bit field as a JSON number, an optional field left out
    data = {"claimed_at": "2026-11-27T10:00:00Z", "points": 10, "reward_id": "r", "user_id": "u"}
    result = publisher.publish_event(org.id, "reward.claimed", data, id="evt-1", timestamp=when)
    assert (result.event_id, result.duplicate) == ("evt-1", False)
    body = payloads(server)["evt-1"]
    # proto JSON of RewardClaimed, in field order: int64 as a string, absent
    # fields without presence written with their zero value
    assert body == (
        '{"id":"evt-1","type":"reward.claimed","timestamp":"2026-11-27T10:15:00.25Z",'
        '"data":{"user_id":"u","reward_id":"r","points":"10","community_id":"",'
        '"claimed_at":"2026-11-27T10:00:00Z"}}'
    )


def test_generated_id_and_default_timestamp(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    publisher: PublisherClient,
) -> None:
    before = datetime.now(UTC)
    data = example("user.authenticated")
    result = publisher.publish_event(org.id, "user.authenticated", data)
    assert result.event_id.startswith("evt_")
    body = json.loads(payloads(server)[result.event_id])
    stamp = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert before.replace(microsecond=0) <= stamp <= datetime.now(UTC)
    assert body["data"] == data


def test_fan_out_follows_filters_and_skips_disabled(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    publisher: PublisherClient,
    admin: AdminClient,
) -> None:
    everything = admin.put_webhook_config(url="https://a.example/h", event_types=["*"]).config
    rewards = admin.put_webhook_config(url="https://b.example/h", event_types=["reward.*"]).config
    claimed = admin.put_webhook_config(
        url="https://c.example/h", event_types=["user.opted_in", "reward.claimed"]
    ).config
    admin.put_webhook_config(url="https://d.example/h", event_types=["*"], enabled=False)

    r1 = publisher.publish_event(org.id, "reward.claimed", example("reward.claimed"), id="e1")
    r2 = publisher.publish_event(org.id, "reward.expired", example("reward.expired"), id="e2")
    r3 = publisher.publish_event(org.id, "action.completed", example("action.completed"), id="e3")
    assert [r1.deliveries, r2.deliveries, r3.deliveries] == [3, 2, 1]
    assert delivery_configs(server, "e1") == {everything.id, rewards.id, claimed.id}
    assert delivery_configs(server, "e2") == {everything.id, rewards.id}
    assert delivery_configs(server, "e3") == {everything.id}


def test_duplicate_id_stores_nothing_new(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    publisher: PublisherClient,
    admin: AdminClient,
) -> None:
    admin.put_webhook_config(url="https://a.example/h", event_types=["*"])
    first = publisher.publish_event(org.id, "reward.claimed", example(points="1"), id="same")
    again = publisher.publish_event(org.id, "reward.claimed", example(points="2"), id="same")
    assert (first.deliveries, first.duplicate) == (1, False)
    assert (again.event_id, again.deliveries, again.duplicate) == ("same", 0, True)
    assert json.loads(payloads(server)["same"])["data"]["points"] == "1"
    with server.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM deliveries")).scalar() == 1


def test_same_id_in_two_organisations_is_two_events(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    other_org: OrgKeys,  # noqa: F811
) -> None:
    with PublisherClient(server.target, org.platform) as platform:
        a = platform.publish_event(org.id, "reward.claimed", example("reward.claimed"), id="shared")
        b = platform.publish_event(
            other_org.id, "reward.claimed", example("reward.claimed"), id="shared"
        )
    assert not a.duplicate and not b.duplicate


def test_batch_answers_in_order_with_duplicates(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    publisher: PublisherClient,
    admin: AdminClient,
) -> None:
    admin.put_webhook_config(url="https://a.example/h", event_types=["reward.*"])
    publisher.publish_event(org.id, "reward.claimed", example("reward.claimed"), id="old")
    results = publisher.publish_events(
        [
            make_publish_request(org.id, "reward.claimed", example("reward.claimed"), id="n1"),
            make_publish_request(org.id, "user.opted_in", example("user.opted_in"), id="n2"),
            make_publish_request(org.id, "reward.claimed", example("reward.claimed"), id="old"),
            make_publish_request(org.id, "reward.claimed", example("reward.claimed"), id="n1"),
        ]
    )
    assert [(r.event_id, r.deliveries, r.duplicate) for r in results] == [
        ("n1", 1, False),
        ("n2", 0, False),
        ("old", 0, True),
        ("n1", 0, True),
    ]


def test_batch_validation_names_the_request(
    org: OrgKeys,  # noqa: F811
    publisher: PublisherClient,
) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        publisher.publish_events(
            [
                make_publish_request(org.id, "reward.claimed", example("reward.claimed")),
                make_publish_request(org.id, "reward.nope", {}),
            ]
        )
    assert [v.field for v in info.value.field_violations] == ["requests[1].event.type"]


def test_organisation_key_publishes_only_for_its_organisation(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    other_org: OrgKeys,  # noqa: F811
    publisher: PublisherClient,
) -> None:
    with pytest.raises(PermissionDeniedError):
        publisher.publish_event(other_org.id, "reward.claimed", example("reward.claimed"))
    # empty organisation: the key's own
    assert not publisher.publish_event(
        "", "reward.claimed", example("reward.claimed"), id="own"
    ).duplicate
    with PublisherClient(server.target, org.platform) as platform:
        assert platform.publish_event(
            other_org.id, "reward.claimed", example("reward.claimed")
        ).event_id
        with pytest.raises(NotFoundError):
            platform.publish_event("org_doesnotexist", "reward.claimed", example("reward.claimed"))
        with pytest.raises(InvalidArgumentError) as info:
            platform.publish_event("", "reward.claimed", example("reward.claimed"))
        assert [v.field for v in info.value.field_violations] == ["organisation_id"]


@pytest.mark.parametrize(
    ("type_", "event_id", "field"),
    [
        ("reward.unknown", "", "event.type"),
        ("reward.*", "", "event.type"),
        ("", "", "event.type"),
        ("reward.claimed", "has space", "event.id"),
        ("reward.claimed", "x" * 129, "event.id"),
    ],
)
def test_invalid_events_name_the_field(
    org: OrgKeys,  # noqa: F811
    publisher: PublisherClient,
    type_: str,
    event_id: str,
    field: str,
) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        publisher.publish_event(org.id, type_, example("reward.claimed"), id=event_id or None)
    assert [v.field for v in info.value.field_violations] == [field]


def test_longest_valid_event_id(org: OrgKeys, publisher: PublisherClient) -> None:  # noqa: F811
    event_id = "A-z_0.9:" * 16
    assert (
        publisher.publish_event(
            org.id, "reward.claimed", example("reward.claimed"), id=event_id
        ).event_id
        == event_id
    )


def test_data_over_the_limit_names_the_limit(
    org: OrgKeys,  # noqa: F811
    publisher: PublisherClient,
) -> None:
    def sized(total: int) -> dict[str, object]:
        """reward.claimed data whose delivered JSON is exactly ``total`` bytes."""
        base = len(json.dumps(example(community_id=""), separators=(",", ":")))
        return example(community_id="x" * (total - base))

    with pytest.raises(InvalidArgumentError) as info:
        publisher.publish_event(org.id, "reward.claimed", sized(262_145))
    (violation,) = info.value.field_violations
    assert violation.field == "event.data"
    assert "262144" in violation.description
    ok = publisher.publish_event(org.id, "reward.claimed", sized(262_144))
    assert ok.event_id
