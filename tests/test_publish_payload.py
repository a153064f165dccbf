"""The delivered bytes: ``build_payload`` and ``rfc3339`` (hand-written for speed)
give exactly what the plain json.dumps/strftime versions they replaced gave,
and a batch's generated ids have the usual format.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.support.payloads import example
from tests.support.server import test_settings as make_settings
from webhooks_service.core import event_body, payloads, publishing


def reference_rfc3339(value: datetime) -> str:
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def reference_payload(event_id: str, event_type: str, timestamp: datetime, data: str) -> str:
    head = json.dumps(
        {"id": event_id, "type": event_type, "timestamp": reference_rfc3339(timestamp)},
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return head[:-1] + ',"data":' + data + "}"


IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))
TIMESTAMPS = [
    datetime(2026, 11, 27, 10, 15, tzinfo=UTC),
    datetime(2026, 11, 27, 10, 15, 0, 1, tzinfo=UTC),
    datetime(2026, 11, 27, 10, 15, 0, 250_000, tzinfo=UTC),
    datetime(2026, 11, 27, 10, 15, 0, 999_999, tzinfo=UTC),
    datetime(2026, 1, 1, 2, 0, 0, 120, tzinfo=IST),  # the year before in UTC
    datetime(2026, 12, 31, 20, 0, 0, 100_000, tzinfo=PST),  # the year after in UTC
    datetime(2026, 11, 27, 10, 15, tzinfo=timezone(timedelta(0))),
    datetime(999, 1, 2, 3, 4, 5, 60, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
]


@pytest.mark.parametrize("timestamp", TIMESTAMPS, ids=str)
def test_rfc3339_is_unchanged(timestamp: datetime) -> None:
    assert event_body.rfc3339(timestamp) == reference_rfc3339(timestamp)


@pytest.mark.parametrize(
    "event_id", ["evt_0123456789abcdef01234567", "a:b.c-d_E9", 'q"uote', "back\\slash", "é😀"]
)
@pytest.mark.parametrize(
    "event_type", ["reward.claimed", "webhook.ping", "ctl\x01\x1f", "line\u2028sep", "del\x7f"]
)
def test_build_payload_is_unchanged(event_id: str, event_type: str) -> None:
    data = '{"name":"Zoë ✓ 😀","note":"\\u0000"}'
    for timestamp in TIMESTAMPS:
        got = event_body.build_payload(event_id, event_type, timestamp, data)
        assert got == reference_payload(event_id, event_type, timestamp, data)


def test_a_published_payload_is_the_reference_bytes() -> None:
    settings = make_settings("sqlite://")
    at = datetime(2026, 11, 27, 12, 15, 0, 250_000, tzinfo=timezone(timedelta(hours=2)))
    data = example("reward.claimed", user_id="usr_Zoë")
    item = publishing.EventInput("org_1", "", "reward.claimed", at, data)
    [generated] = event_body.new_event_ids(1)
    event, problems = publishing.prepare(
        item, caller_org=None, settings=settings, now=at, generated_id=generated
    )
    assert problems == [] and event is not None
    resolved, _ = payloads.resolve("reward.claimed", data, None)
    assert resolved is not None and "Zoë" in resolved.data_json
    assert event.payload == reference_payload(generated, "reward.claimed", at, resolved.data_json)
    assert event.payload.startswith(f'{{"id":"{generated}",') and "2026-11-27T10:15:00.25Z" in (
        event.payload
    )


def test_batch_ids_have_the_generated_format() -> None:
    ids = event_body.new_event_ids(500)
    assert len(set(ids)) == 500
    assert all(
        len(i) == 28 and i.startswith("evt_") and int(i[4:], 16) >= 0 and i == i.lower()
        for i in ids
    )
    assert event_body.new_event_ids(0) == []
    one = event_body.new_event_id()
    assert len(one) == 28 and one.startswith("evt_")
