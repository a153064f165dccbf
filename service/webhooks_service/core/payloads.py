"""Typed payloads: check an event's ``data`` against its type's message and
render it as the delivered proto JSON.

Every catalog type names its payload message (``payload`` option of its
``EventType`` value, messages in ``payloads.proto``). :func:`resolve` is the
one call ``core.publishing`` makes per published event: it settles the type
and the payload, from either form a publisher may send,

- ``data``, a JSON object (``google.protobuf.Struct``), for publishers without
  stubs; or
- ``payload``, the typed message packed in a ``google.protobuf.Any`` (the type
  may then be left empty: it is the message's),

and answers the compact JSON of ``data`` as it is delivered, or the field
violations found. Each violation names its path (``event.data.points``,
``event.data.value.currency``, ``requests[3].event.payload.user_id``):

- an unknown field; a JSON value of the wrong type (a string for an integer,
  a number for a string, …); an integer out of its field's range (uint32 is
  0 to 4294967295, …); an enum name that does not exist; a timestamp that is
  not RFC 3339; a string that does not match the field's ``pattern``;
- a missing REQUIRED field (``(google.api.field_behavior) = REQUIRED``): an
  empty string or list, the unspecified enum value, an absent Timestamp or
  message.

The rendering is proto JSON (``json_format.MessageToDict``): proto field
names; int64/uint64 as decimal strings; enums as names; Timestamps as
RFC 3339; every field without presence always written (its zero value when
not set), ``optional`` fields and messages only when set. So the delivered
``data`` matches the JSON Schema ``ListEventTypes`` publishes for the type.

Integers in a Struct are doubles: a 64-bit value beyond 2^53 given as a JSON
number could have been rounded before it reached us, so it is refused with a
hint to send it as a decimal string (exact), or to publish the typed message.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import any_pb2, descriptor, json_format, message_factory, timestamp_pb2
from google.protobuf.message import DecodeError, Message

from webhooks.v1 import events_pb2, payloads_pb2
from webhooks_service.core import catalog
from webhooks_service.errors import FieldViolation

__all__ = ["Resolved", "message_class", "resolve", "validate"]

FD = descriptor.FieldDescriptor
# Descriptors, typed loosely: the stubs' Optional[...] attributes (message_type,
# enum_type) are always set for the field kinds that read them here.
MessageDesc = Any
FieldDesc = Any
_REQUIRED_EXT: Any = field_behavior_pb2.field_behavior
_PATTERN_EXT: Any = events_pb2.pattern
_EXACT = 2**53
_INT_RE = re.compile(r"-?[0-9]+")
_RANGES: dict[int, tuple[int, int]] = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}
_SIXTY_FOUR = {FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64, FD.TYPE_UINT64, FD.TYPE_FIXED64}
_TIMESTAMP = "google.protobuf.Timestamp"
_ANY_PREFIX = "type.googleapis.com/"

assert payloads_pb2.DESCRIPTOR  # the payload messages are in the default pool


@dataclass(frozen=True, slots=True)
class Resolved:
    """An event's type and its ``data`` as delivered (compact proto JSON)."""

    event_type: str
    data_json: str


@cache
def message_class(event_type: str) -> type[Message]:
    """The generated class of a type's payload message (KeyError if unknown)."""
    info = catalog.info(event_type)
    if info is None:
        raise KeyError(event_type)
    desc = payloads_pb2.DESCRIPTOR.pool.FindMessageTypeByName(info.payload)
    return message_factory.GetMessageClass(desc)


def _required(field: FieldDesc) -> bool:
    return field_behavior_pb2.REQUIRED in field.GetOptions().Extensions[_REQUIRED_EXT]


@cache
def _pattern(field: FieldDesc) -> re.Pattern[str] | None:
    text: str = field.GetOptions().Extensions[_PATTERN_EXT]
    return re.compile(text) if text else None


def validate(value: Any, desc: MessageDesc, path: str) -> list[FieldViolation]:
    """Violations of ``value`` (decoded JSON) against message ``desc``, paths under ``path``."""
    if not isinstance(value, Mapping):
        return [FieldViolation(path, f"expected a JSON object ({desc.name})")]
    problems: list[FieldViolation] = []
    seen: set[str] = set()
    by_json = {f.json_name: f for f in desc.fields}
    for key, item in value.items():
        field = desc.fields_by_name.get(key) or by_json.get(key)
        where = f"{path}.{key}"
        if field is None:
            known = ", ".join(f.name for f in desc.fields)
            problems.append(FieldViolation(where, f"unknown field; {desc.name} has {known}"))
            continue
        if field.name in seen:
            problems.append(FieldViolation(where, "given twice (proto and JSON name)"))
            continue
        seen.add(field.name)
        if item is None:
            continue  # JSON null: not set
        seen_value = _check_field(field, item, where, problems)
        if not seen_value:
            seen.discard(field.name)
    for field in desc.fields:
        if _required(field) and field.name not in seen:
            problems.append(FieldViolation(f"{path}.{field.name}", _missing(field)))
    return problems


def _missing(field: FieldDesc) -> str:
    if field.type == FD.TYPE_ENUM:
        names = [v.name for v in field.enum_type.values if v.number != 0]
        return "required: one of " + ", ".join(names)
    return "required"


def _check_field(field: FieldDesc, item: Any, where: str, problems: list[FieldViolation]) -> bool:
    """Check one present field; False when it is present but empty (for REQUIRED)."""
    if field.is_repeated:
        if not isinstance(item, list):
            problems.append(FieldViolation(where, "expected a JSON array"))
            return True
        for i, element in enumerate(item):
            _check_value(field, element, f"{where}[{i}]", problems)
        return bool(item)
    return _check_value(field, item, where, problems)


def _check_value(field: FieldDesc, item: Any, where: str, problems: list[FieldViolation]) -> bool:
    kind = field.type
    if kind == FD.TYPE_MESSAGE:
        if field.message_type.full_name == _TIMESTAMP:
            return _check_timestamp(item, where, problems)
        problems.extend(validate(item, field.message_type, where))
        return True
    if kind == FD.TYPE_ENUM:
        names = [v.name for v in field.enum_type.values]
        if not isinstance(item, str) or item not in names:
            allowed = ", ".join(n for n in names if not n.endswith("_UNSPECIFIED"))
            problems.append(FieldViolation(where, f"expected one of {allowed}"))
            return True
        return bool(field.enum_type.values_by_name[item].number != 0)
    if kind == FD.TYPE_STRING:
        if not isinstance(item, str):
            problems.append(FieldViolation(where, "expected a string"))
            return True
        pattern = _pattern(field)
        if item and pattern is not None and not pattern.search(item):
            problems.append(FieldViolation(where, f"must match {pattern.pattern}"))
        return item != ""
    if kind == FD.TYPE_BOOL:
        if not isinstance(item, bool):
            problems.append(FieldViolation(where, "expected true or false"))
        return True
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            problems.append(FieldViolation(where, "expected a finite number"))
        return True
    if kind in _RANGES:
        _check_integer(kind, item, where, problems)
        return True
    if kind == FD.TYPE_BYTES:
        if not isinstance(item, str):
            problems.append(FieldViolation(where, "expected a base64 string"))
        return True
    problems.append(FieldViolation(where, "unsupported field type"))
    return True


def _check_integer(kind: int, item: Any, where: str, problems: list[FieldViolation]) -> None:
    low, high = _RANGES[kind]
    wide = kind in _SIXTY_FOUR
    expected = f"expected an integer from {low} to {high}" + (
        " (as a decimal string, or a JSON number up to 2^53)" if wide else ""
    )
    if isinstance(item, str):
        if not _INT_RE.fullmatch(item):
            problems.append(FieldViolation(where, expected))
            return
        number = int(item)
    elif isinstance(item, bool) or not isinstance(item, int | float):
        problems.append(FieldViolation(where, expected))
        return
    elif isinstance(item, float):
        if not item.is_integer():
            problems.append(FieldViolation(where, expected))
            return
        if abs(item) > _EXACT:
            problems.append(
                FieldViolation(
                    where,
                    "a JSON number beyond 2^53 is not exact here (JSON data is a "
                    "google.protobuf.Struct of doubles): send it as a decimal string, "
                    'e.g. "9007199254740993", or publish the typed payload message',
                )
            )
            return
        number = int(item)
    else:
        number = item
    if not low <= number <= high:
        problems.append(FieldViolation(where, f"out of range: {expected}"))


def _check_timestamp(item: Any, where: str, problems: list[FieldViolation]) -> bool:
    if isinstance(item, str):
        try:
            timestamp_pb2.Timestamp().FromJsonString(item)
            return True
        except ValueError:
            pass
    problems.append(
        FieldViolation(where, "expected an RFC 3339 timestamp, e.g. 2026-11-27T10:15:00Z")
    )
    return True


def _in_field_order(value: Any, desc: MessageDesc) -> Any:
    """MessageToDict lists set fields before defaulted ones; deliver them in proto order."""
    ordered: dict[str, Any] = {}
    for field in desc.fields:
        if field.name not in value:
            continue
        item = value[field.name]
        if field.type == FD.TYPE_MESSAGE and field.message_type.full_name != _TIMESTAMP:
            if field.is_repeated:
                item = [_in_field_order(v, field.message_type) for v in item]
            else:
                item = _in_field_order(item, field.message_type)
        ordered[field.name] = item
    return ordered


def _render(message: Message) -> str:
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    data = _in_field_order(data, message.DESCRIPTOR)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def resolve(
    event_type: str,
    data: Mapping[str, Any] | None,
    payload: any_pb2.Any | None,
    *,
    prefix: str = "",
) -> tuple[Resolved | None, list[FieldViolation]]:
    """The event's type and delivered ``data``, or the violations (paths under ``prefix``)."""
    if payload is not None:
        return _resolve_typed(event_type, data, payload, prefix)
    problem = _check_type(event_type, prefix)
    if problem is not None:
        return None, [problem]
    cls = message_class(event_type)
    root = f"{prefix}event.data"
    problems = validate(dict(data or {}), cls.DESCRIPTOR, root)
    if problems:
        return None, problems
    message = cls()
    try:
        json_format.ParseDict(dict(data or {}), message)
    except json_format.ParseError as exc:  # the checks above should leave nothing for here
        return None, [FieldViolation(root, str(exc))]
    return Resolved(event_type, _render(message)), []


def _check_type(event_type: str, prefix: str) -> FieldViolation | None:
    field = f"{prefix}event.type"
    if not event_type:
        return FieldViolation(field, "required: a catalog type such as reward.claimed")
    if catalog.is_publishable(event_type):
        return None
    if catalog.info(event_type) is not None:
        return FieldViolation(
            field, f"{event_type} is sent by the service itself; it cannot be published"
        )
    return FieldViolation(
        field, f"{event_type!r} is not in the catalog: {catalog.did_you_mean(event_type)}"
    )


def _resolve_typed(
    event_type: str, data: Mapping[str, Any] | None, payload: any_pb2.Any, prefix: str
) -> tuple[Resolved | None, list[FieldViolation]]:
    root = f"{prefix}event.payload"
    if data is not None:
        return None, [FieldViolation(f"{prefix}event.data", "set data or payload, not both")]
    name = payload.type_url.removeprefix(_ANY_PREFIX)
    info = catalog.for_payload(name)
    if info is None:
        return None, [
            FieldViolation(
                root,
                f"{payload.type_url or '(empty type_url)'} is not a payload message of the "
                "catalog (e.g. type.googleapis.com/webhooks.v1.RewardClaimed)",
            )
        ]
    if event_type and event_type != info.name:
        return None, [
            FieldViolation(
                f"{prefix}event.type",
                f"{event_type!r} does not match the payload {name} (type {info.name}); "
                "leave it empty to infer it",
            )
        ]
    problem = _check_type(info.name, prefix)
    if problem is not None:
        return None, [problem]
    message = message_class(info.name)()
    try:
        message.ParseFromString(payload.value)
    except DecodeError:
        return None, [FieldViolation(root, f"not a valid serialised {name}")]
    as_json = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    problems = validate(as_json, message.DESCRIPTOR, root)
    if problems:
        return None, problems
    return Resolved(info.name, _render(message)), []
