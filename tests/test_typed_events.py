"""Typed events end to end, on SQLite and PostgreSQL through the real server:
every catalog type is published, delivered, verified, parsed back into its
message and its delivered ``data`` validates against the JSON Schema that
ListEventTypes serves; bad data is INVALID_ARGUMENT naming the field path;
64-bit integers arrive exact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from google.protobuf import json_format
from standardwebhooks.webhooks import Webhook

from tests.support.delivery_env import DeliveryEnv, delivery_env
from tests.support.fixtures import OrgKeys, org, server  # noqa: F401
from tests.support.payloads import example
from tests.support.server import RunningServer
from webhooks.v1 import events_pb2, payloads_pb2
from webhooks_client import (
    EventParseError,
    InvalidArgumentError,
    PublisherClient,
    make_publish_request,
    parse_event,
    payload_class,
)
from webhooks_service.core import catalog, payloads
from webhooks_service.core.event_types import described_types

FAST = {"retry_schedule": (0.05, 0.05)}


@pytest.fixture
def env(database_url: str) -> Iterator[DeliveryEnv]:
    with delivery_env(database_url, FAST) as e:
        yield e


def served_schemas(env: DeliveryEnv) -> dict[str, dict[str, Any]]:
    return {t.name: t.schema for t in env.admin.list_event_types()}


def check_schema(schema: dict[str, Any], data: Any) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(data)


def test_every_type_is_delivered_verified_parsed_and_matches_its_schema(env: DeliveryEnv) -> None:
    config, secret = env.config("/all", types=["*"])
    schemas = served_schemas(env)
    for event_type in catalog.PUBLISHABLE:
        env.publisher.publish_event(env.org_id, event_type, example(event_type), id=event_type)
    ping = env.admin.send_test_event(config.id)  # webhook.ping, sent by the service
    expected = [*catalog.PUBLISHABLE, "webhook.ping"]
    received = env.rx.wait_for(len(expected), "/all")
    seen: set[str] = set()
    for got in received:
        Webhook(secret).verify(got.body, got.headers)
        body = json.loads(got.body)
        assert list(body) == ["id", "type", "timestamp", "data"]
        event, message = parse_event(got.body)
        assert event.type == body["type"] and event.id == body["id"]
        assert type(message) is payload_class(event.type)
        check_schema(schemas[event.type], body["data"])
        if event.type == "webhook.ping":
            assert event.id == ping.event_id and message.config_id == config.id  # type: ignore[attr-defined]
        else:
            assert event.id == event.type
            # delivered exactly as the catalog's example shows (canonical proto JSON)
            assert body["data"] == example(event.type)
        seen.add(event.type)
    assert seen == set(expected)


def test_a_64_bit_integer_survives_the_round_trip_exactly(env: DeliveryEnv) -> None:
    env.config("/big", types=["reward.claimed"])
    biggest = 2**63 - 1
    beyond_doubles = 2**53 + 1  # 9007199254740993: a double would make it ...992
    typed = payloads_pb2.RewardClaimed(user_id="usr_1", reward_id="rwd_1", points=biggest)
    typed.claimed_at.FromJsonString("2026-11-27T10:15:00Z")
    env.publisher.publish(env.org_id, typed, id="typed")
    env.publisher.publish_event(
        env.org_id, "reward.claimed", example(points=str(beyond_doubles)), id="json"
    )
    got = {json.loads(r.body)["id"]: r.body for r in env.rx.wait_for(2, "/big")}
    assert b'"points":"9223372036854775807"' in got["typed"]
    assert b'"points":"9007199254740993"' in got["json"]
    assert parse_event(got["typed"])[1].points == biggest  # type: ignore[attr-defined]
    assert parse_event(got["json"])[1].points == beyond_doubles  # type: ignore[attr-defined]
    # As a JSON number (a double in a Struct) it could not be exact: refused, not rounded.
    with pytest.raises(InvalidArgumentError) as info:
        env.publisher.publish_event(env.org_id, "reward.claimed", example(points=float(2**60)))
    (violation,) = info.value.field_violations
    assert violation.field == "event.data.points" and "decimal string" in violation.description


@pytest.mark.parametrize(
    ("event_type", "data", "field", "says"),
    [
        ("reward.claimed", example(bonus=1), "event.data.bonus", "unknown field"),
        ("reward.claimed", example(points="ten"), "event.data.points", "integer"),
        ("reward.claimed", example(user_id=5), "event.data.user_id", "string"),
        ("reward.claimed", example(claimed_at="yesterday"), "event.data.claimed_at", "RFC 3339"),
        ("reward.claimed", example(user_id=""), "event.data.user_id", "required"),
        (
            "reward.claimed",
            {k: v for k, v in example().items() if k != "reward_id"},
            "event.data.reward_id",
            "required",
        ),
        (
            "achievement.tier_progressed",
            example("achievement.tier_progressed", tier=-1),
            "event.data.tier",
            "out of range",
        ),
        (
            "achievement.streak_milestone",
            example("achievement.streak_milestone", streak_days=2**32),
            "event.data.streak_days",
            "out of range",
        ),
        (
            "reward.expired",
            example("reward.expired", reason="REWARD_EXPIRY_REASON_BORED"),
            "event.data.reason",
            "REWARD_EXPIRY_REASON_UNCLAIMED",
        ),
        (
            "reward.distributed",
            example("reward.distributed", value={"amount": "10.00", "currency": "euro"}),
            "event.data.value.currency",
            "match",
        ),
        (
            "challenge.recap_generated",
            example("challenge.recap_generated", top_user_ids=["usr_1", 2]),
            "event.data.top_user_ids[1]",
            "string",
        ),
    ],
)
def test_bad_data_is_invalid_argument_naming_the_path(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    event_type: str,
    data: dict[str, Any],
    field: str,
    says: str,
) -> None:
    with PublisherClient(server.target, org.publish) as publisher:
        with pytest.raises(InvalidArgumentError) as info:
            publisher.publish_event(org.id, event_type, data)
        (violation,) = info.value.field_violations
        assert violation.field == field and says in violation.description, violation
        # in a batch, the path says which request
        with pytest.raises(InvalidArgumentError) as batch:
            publisher.publish_events(
                [
                    make_publish_request(org.id, "reward.claimed", example()),
                    make_publish_request(org.id, event_type, data),
                ]
            )
        assert [v.field for v in batch.value.field_violations] == [f"requests[1].{field}"]


def test_type_and_payload_must_agree(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
) -> None:
    claimed = payloads_pb2.RewardClaimed()
    json_format.ParseDict(example(), claimed)
    with PublisherClient(server.target, org.publish) as publisher:
        request = make_publish_request(org.id, claimed)
        request.event.type = "reward.redeemed"
        with pytest.raises(InvalidArgumentError, match="does not match"):
            publisher.publish_events([request])
        request.event.type = ""
        request.event.data.update({"user_id": "x"})
        with pytest.raises(InvalidArgumentError, match="not both"):
            publisher.publish_events([request])
        with pytest.raises(InvalidArgumentError, match="the service sends it itself"):
            publisher.publish_event(
                org.id, "webhook.endpoint_disabled", example("webhook.endpoint_disabled")
            )


def test_unknown_type_names_the_closest_types(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
) -> None:
    with (
        PublisherClient(server.target, org.publish) as publisher,
        pytest.raises(InvalidArgumentError) as info,
    ):
        publisher.publish_event(org.id, "reward.claim", example())
    (violation,) = info.value.field_violations
    assert violation.field == "event.type"
    assert "'reward.claimed'" in violation.description
    assert "GET /webhooks/event-types" in violation.description


# -- the contract itself (no server) ---------------------------------------------


@pytest.mark.parametrize("info", described_types(), ids=lambda t: t.name)
def test_each_example_is_valid_canonical_and_parses(info: Any) -> None:
    """What the docs show is exactly what a receiver gets: the example validates
    against the schema, renders to itself, and parses into the type's message."""
    check_schema(info.schema, info.example)
    resolved, problems = payloads.resolve(info.name, info.example, None)
    if catalog.is_publishable(info.name):
        assert not problems and resolved is not None
        assert json.loads(resolved.data_json) == info.example
    body = json.dumps(
        {
            "id": "evt_1",
            "type": info.name,
            "timestamp": "2026-11-27T10:15:00Z",
            "data": info.example,
        }
    )
    _, message = parse_event(body)
    assert (
        json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        == info.example
    )
    # every field of the message is documented
    assert all(prop.get("description") for prop in info.schema["properties"].values()), info.name


def test_operational_payloads_have_the_fields_the_lifecycle_sends() -> None:
    """webhook.endpoint_disabled / webhook.delivery_failed: the exact proto-JSON
    fields agreed with the lifecycle work (issue 12)."""
    schemas = {t.name: t.schema for t in described_types()}
    disabled = schemas["webhook.endpoint_disabled"]
    assert list(disabled["properties"]) == [
        "config_id",
        "url",
        "reason",
        "failing_since",
        "disabled_at",
    ]
    assert set(disabled["required"]) == {"config_id", "url", "reason", "disabled_at"}
    assert disabled["properties"]["reason"]["enum"] == [
        "ENDPOINT_DISABLED_REASON_GONE",
        "ENDPOINT_DISABLED_REASON_FAILING",
        "ENDPOINT_DISABLED_REASON_ADMIN",
    ]
    failed = schemas["webhook.delivery_failed"]
    assert list(failed["properties"]) == [
        "config_id",
        "delivery_id",
        "event_id",
        "event_type",
        "outcome",
        "attempts",
        "last_status_code",
        "last_error",
        # coalesced failures (issue 26.1): new fields only, the old ones unchanged
        "failed_deliveries",
        "first_delivery_id",
        "last_delivery_id",
        "first_failed_at",
        "last_failed_at",
    ]
    assert "OUTCOME_DEAD" in failed["properties"]["outcome"]["enum"]
    assert failed["properties"]["failed_deliveries"]["type"] == "integer"
    assert failed["properties"]["attempts"]["type"] == "integer"


def test_parse_event_rejects_what_does_not_match() -> None:
    good = {
        "id": "evt_1",
        "type": "reward.claimed",
        "timestamp": "2026-11-27T10:15:00Z",
        "data": example(),
    }
    for bad, says in [
        ({**good, "type": "reward.nope"}, "unknown event type"),
        ({**good, "data": example(points="ten")}, "does not match"),
        ({**good, "data": {k: v for k, v in example().items() if k != "user_id"}}, "user_id"),
        ({k: v for k, v in good.items() if k != "data"}, '"data"'),
    ]:
        with pytest.raises(EventParseError, match=says):
            parse_event(json.dumps(bad))
    with pytest.raises(EventParseError, match="not JSON"):
        parse_event(b"{nope")
    # a field these stubs do not know yet (added later, as the rules allow) is ignored...
    newer = {**good, "data": example(added_later="x")}
    assert parse_event(json.dumps(newer))[1].user_id == "usr_8f2kq1"  # type: ignore[attr-defined]
    # ...unless strict
    with pytest.raises(EventParseError):
        parse_event(json.dumps(newer), strict=True)


def test_event_proto_documents_both_ways_to_publish() -> None:
    event = events_pb2.Event()
    assert event.data.DESCRIPTOR.full_name == "google.protobuf.Struct"
    assert event.payload.DESCRIPTOR.full_name == "google.protobuf.Any"


@pytest.mark.parametrize(
    ("given", "delivered"),
    [
        ("2026-11-27T10:15:00Z", "2026-11-27T10:15:00Z"),
        ("2026-11-27T10:15:00.250Z", "2026-11-27T10:15:00.250Z"),
        ("2026-11-27T12:15:00+02:00", "2026-11-27T10:15:00Z"),
        ("2026-11-27T10:15:00.5Z", "2026-11-27T10:15:00.500Z"),
    ],
)
def test_timestamps_are_delivered_in_utc_as_proto_json(given: str, delivered: str) -> None:
    resolved, problems = payloads.resolve("reward.claimed", example(claimed_at=given), None)
    assert not problems and resolved is not None
    assert json.loads(resolved.data_json)["claimed_at"] == delivered
    _, problems = payloads.resolve(
        "reward.claimed", example(claimed_at="2026-13-01T00:00:00Z"), None
    )
    assert [p.field for p in problems] == ["event.data.claimed_at"]


def test_renderer_matches_message_to_dict_for_a_typed_payload() -> None:
    from google.protobuf import any_pb2

    distributed = payloads_pb2.RewardDistributed(
        user_id="u", reward_id="r", kind=payloads_pb2.REWARD_KIND_BADGE, points=-(2**63)
    )
    distributed.distributed_at.FromJsonString("2026-11-27T10:15:00.123456789Z")
    packed = any_pb2.Any()
    packed.Pack(distributed)
    resolved, problems = payloads.resolve("", None, packed)
    assert not problems and resolved is not None
    assert json.loads(resolved.data_json) == json_format.MessageToDict(
        distributed, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    assert resolved.event_type == "reward.distributed"
