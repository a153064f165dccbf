"""Typed events: the payload message of each event type, both ways.

Every catalog type has a payload message in ``webhooks.v1.payloads_pb2``
(``reward.claimed`` -> ``RewardClaimed``), named by the ``payload`` option of
its ``webhooks.v1.EventType`` value. This module reads that table from the
generated descriptors (no server needed):

- publishing: :func:`event_type_of` (``RewardClaimed(...)`` -> ``"reward.claimed"``),
  used by ``PublisherClient.publish``;
- receiving: :func:`parse_event` turns a delivered body (after
  :func:`webhooks_client.verify`) into ``(Event, RewardClaimed)``.

    from webhooks_client import parse_event, verify
    from webhooks.v1.payloads_pb2 import RewardClaimed

    verify(secret, headers, body)
    event, data = parse_event(body)
    if isinstance(data, RewardClaimed):
        credit(data.user_id, data.points)     # points is an int, exact

Fields the receiver's stubs do not know yet are ignored (the service only
ever adds optional fields, see docs/events.md), unless ``strict=True``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.message import Message

from webhooks.v1 import events_pb2, payloads_pb2

__all__ = ["EventParseError", "event_type_of", "event_types", "parse_event", "payload_class"]

_POOL = payloads_pb2.DESCRIPTOR.pool
_REQUIRED = field_behavior_pb2.REQUIRED


class EventParseError(ValueError):
    """The body is not a delivery of a known event type with a valid payload."""


def _table() -> tuple[dict[str, str], dict[str, str]]:
    by_type: dict[str, str] = {}
    for value in events_pb2.EventType.DESCRIPTOR.values:
        options = value.GetOptions()
        wire = options.Extensions[events_pb2.wire_name]
        payload = options.Extensions[events_pb2.payload]
        if wire and payload:
            by_type[wire] = payload
    return by_type, {payload: wire for wire, payload in by_type.items()}


_BY_TYPE, _BY_PAYLOAD = _table()


def event_types() -> list[str]:
    """Every event type these stubs know, in catalog order (``webhook.*`` included)."""
    return list(_BY_TYPE)


def payload_class(event_type: str) -> type[Message]:
    """The payload message class of ``event_type`` (``KeyError`` if unknown)."""
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(_BY_TYPE[event_type]))


def event_type_of(payload: Message) -> str:
    """The event type whose payload ``payload`` is (``ValueError`` for other messages)."""
    name = payload.DESCRIPTOR.full_name
    try:
        return _BY_PAYLOAD[name]
    except KeyError:
        raise ValueError(
            f"{name} is not an event payload message (see webhooks.v1.payloads_pb2)"
        ) from None


def _missing_required(message: Message) -> list[str]:
    ext: Any = field_behavior_pb2.field_behavior
    missing: list[str] = []
    for field in message.DESCRIPTOR.fields:
        if _REQUIRED not in field.GetOptions().Extensions[ext]:
            continue
        if field.is_repeated:
            present = len(getattr(message, field.name)) > 0
        elif field.message_type is not None:
            present = message.HasField(field.name)
        elif field.type in (field.TYPE_STRING, field.TYPE_BYTES, field.TYPE_ENUM):
            present = bool(getattr(message, field.name))  # "" / the unspecified value
        else:
            present = True  # a number's 0 is a value

        if not present:
            missing.append(field.name)
    return missing


def parse_event(
    body: bytes | str | Mapping[str, Any], *, strict: bool = False
) -> tuple[events_pb2.Event, Message]:
    """``(Event, payload)`` of a delivered body ``{"id","type","timestamp","data"}``
    (the raw bytes, or the dict ``Deduplicator.handle`` passes to its ``process``).

    ``Event`` carries ``id``, ``type`` and ``timestamp`` (and the payload packed
    in ``payload``); the payload is the type's message (e.g. ``RewardClaimed``).
    Raises :class:`EventParseError` when the body is not JSON of that shape, the
    type is unknown to these stubs, ``data`` does not fit the type's message,
    or a REQUIRED field is missing. Unknown fields of ``data`` are ignored
    (forward compatible) unless ``strict``.
    """
    if isinstance(body, Mapping):
        doc: Any = dict(body)
    else:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventParseError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or not {"id", "type", "timestamp", "data"} <= set(doc):
        raise EventParseError('expected a JSON object with "id", "type", "timestamp", "data"')
    event_type = doc["type"]
    if not isinstance(event_type, str) or event_type not in _BY_TYPE:
        raise EventParseError(
            f"unknown event type {event_type!r} (these stubs know {len(_BY_TYPE)} types; "
            "a newer webhooks-client may know it)"
        )
    event = events_pb2.Event(id=str(doc["id"]), type=event_type)
    try:
        event.timestamp.FromJsonString(str(doc["timestamp"]))
    except ValueError as exc:
        raise EventParseError(f"timestamp: {exc}") from None
    payload = payload_class(event_type)()
    try:
        json_format.ParseDict(doc["data"], payload, ignore_unknown_fields=not strict)
    except json_format.ParseError as exc:
        raise EventParseError(f"data does not match {payload.DESCRIPTOR.name}: {exc}") from None
    missing = _missing_required(payload)
    if missing:
        raise EventParseError(
            f"data lacks required fields of {payload.DESCRIPTOR.name}: {', '.join(missing)}"
        )
    event.payload.Pack(payload)
    return event, payload
