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

The rendering is proto JSON, as ``json_format.MessageToDict`` with
``always_print_fields_with_no_presence`` would write it (a test holds the
two equal on every example), in proto field order: proto field names;
int64/uint64 as decimal strings; enums as names; Timestamps as RFC 3339 in
UTC; every field without presence always written (its zero value when not
set), ``optional`` fields and messages only when set. It is done in the same
pass as the checks, over a plan of each message read once from its
descriptor (no ParseDict/MessageToDict round trip on the hot path). So the
delivered ``data`` matches the JSON Schema ``ListEventTypes`` publishes.

``data`` is walked once, as it arrived: a ``google.protobuf.Struct`` (the
gRPC request's, never turned into a dict first: each value is read where its
field is checked, :func:`_plain`) or a decoded JSON mapping (the REST
gateway's tests, the service's own events), with the same checks, paths and
messages either way.

Integers in a Struct are doubles: a 64-bit value beyond ±(2^53 - 1) given as a
JSON number could have been rounded before it reached us (2^53 + 1 arrives as
2^53), so it is refused with a hint to send it as a decimal string (exact, as
proto JSON writes int64), or to publish the typed message.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import (
    any_pb2,
    descriptor,
    json_format,
    message_factory,
    struct_pb2,
    timestamp_pb2,
)
from google.protobuf.message import DecodeError, Message

from webhooks.v1 import events_pb2, payloads_pb2
from webhooks_service.core import catalog
from webhooks_service.errors import FieldViolation
from webhooks_service.protojson import SCALARS

__all__ = ["Data", "Resolved", "message_class", "render_data", "resolve", "validate"]

FD = descriptor.FieldDescriptor
# Descriptors, typed loosely: the stubs' Optional[...] attributes (message_type,
# enum_type) are always set for the field kinds that read them here.
MessageDesc = Any
FieldDesc = Any
_REQUIRED_EXT: Any = field_behavior_pb2.field_behavior
_PATTERN_EXT: Any = events_pb2.pattern
_EXACT = 2**53 - 1  # the largest double no other integer rounds to
_INT_RE = re.compile(r"-?[0-9]+")
_RANGES: dict[int, tuple[int, int]] = {
    kind: (s.low, s.high) for kind, s in SCALARS.items() if s.low is not None and s.high is not None
}
_SIXTY_FOUR = {kind for kind, s in SCALARS.items() if s.as_string}
_TIMESTAMP = "google.protobuf.Timestamp"
_ANY_PREFIX = "type.googleapis.com/"

assert payloads_pb2.DESCRIPTOR  # the payload messages are in the default pool


@dataclass(frozen=True, slots=True)
class Resolved:
    """An event's type and its ``data`` as delivered (compact proto JSON)."""

    event_type: str
    data_json: str


@cache
def _descriptor(event_type: str) -> MessageDesc:
    info = catalog.info(event_type)
    if info is None:
        raise KeyError(event_type)
    return payloads_pb2.DESCRIPTOR.pool.FindMessageTypeByName(info.payload)


def message_class(event_type: str) -> type[Message]:
    """The generated class of a type's payload message (KeyError if unknown)."""
    return message_factory.GetMessageClass(_descriptor(event_type))


@dataclass(frozen=True, slots=True)
class _Field:
    """What converting one field needs, read once from its descriptor."""

    name: str
    json_name: str
    kind: int
    repeated: bool
    required: bool
    presence: bool  # written only when set (messages, proto3 optional)
    pattern: re.Pattern[str] | None
    enum: dict[str, int] | None  # value name -> number
    message: _Message | None  # nested message (not Timestamp)
    timestamp: bool


@dataclass(frozen=True, slots=True)
class _Message:
    name: str
    fields: tuple[_Field, ...]
    by_key: dict[str, _Field]  # proto and JSON names


@cache
def _plan(desc: MessageDesc) -> _Message:
    fields: list[_Field] = []
    for f in desc.fields:
        options = f.GetOptions()
        pattern: str = options.Extensions[_PATTERN_EXT]
        is_message = f.type == FD.TYPE_MESSAGE
        timestamp = is_message and f.message_type.full_name == _TIMESTAMP
        fields.append(
            _Field(
                name=f.name,
                json_name=f.json_name,
                kind=f.type,
                repeated=bool(f.is_repeated),
                required=field_behavior_pb2.REQUIRED in options.Extensions[_REQUIRED_EXT],
                presence=bool(f.has_presence) and not f.is_repeated,
                pattern=re.compile(pattern) if pattern else None,
                enum={v.name: v.number for v in f.enum_type.values}
                if f.type == FD.TYPE_ENUM
                else None,
                message=_plan(f.message_type) if is_message and not timestamp else None,
                timestamp=timestamp,
            )
        )
    by_key = {f.name: f for f in fields} | {f.json_name: f for f in fields}
    return _Message(desc.name, tuple(fields), by_key)


@cache
def _type_plan(event_type: str) -> _Message:
    """The plan of a type's payload message (one lookup per event)."""
    return _plan(_descriptor(event_type))


def _default(field: _Field) -> Any:
    if field.repeated:
        return []
    if field.kind == FD.TYPE_ENUM:
        assert field.enum is not None
        return next(name for name, number in field.enum.items() if number == 0)
    if field.kind == FD.TYPE_STRING or field.kind == FD.TYPE_BYTES:
        return ""
    if field.kind == FD.TYPE_BOOL:
        return False
    if field.kind in _SIXTY_FOUR:
        return "0"
    if field.kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return 0.0
    return 0


Data = Mapping[str, Any] | struct_pb2.Struct
_Struct = struct_pb2.Struct


def _plain(v: struct_pb2.Value) -> Any:
    """One Struct value as ``core.event_body.struct_to_dict`` decodes it (integral
    numbers within ±(2^53 - 1) as ints), except that an object stays a Struct
    (walked by :func:`_convert` where a message is expected)."""
    kind = v.WhichOneof("kind")
    if kind == "string_value":
        return v.string_value
    if kind == "number_value":
        n = v.number_value
        if math.isfinite(n) and n.is_integer() and abs(n) <= _EXACT:
            return int(n)
        return n
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return v.struct_value
    if kind == "list_value":
        return [_plain(item) for item in v.list_value.values]
    return None


def validate(value: Any, desc: MessageDesc, path: str) -> list[FieldViolation]:
    """Violations of ``value`` (decoded JSON) against message ``desc``, paths under ``path``."""
    problems: list[FieldViolation] = []
    _convert(value, _plan(desc), path, problems)
    return problems


def _convert(
    value: Any, plan: _Message, path: str, problems: list[FieldViolation]
) -> dict[str, Any]:
    """``value`` (a Struct or a mapping) checked against ``plan`` and rendered as
    proto JSON, in field order."""
    if isinstance(value, _Struct):
        # keys, then each value by key: both in C (the map's items() view is a
        # Python-level generator of the same lookups)
        fields = value.fields
        items: Any = [(key, _plain(fields[key])) for key in fields]
    elif isinstance(value, Mapping):
        items = value.items()
    else:
        problems.append(FieldViolation(path, f"expected a JSON object ({plan.name})"))
        return {}
    given: dict[str, Any] = {}
    by_key = plan.by_key
    for key, item in items:
        field = by_key.get(key)
        if field is None:
            known = ", ".join(f.name for f in plan.fields)
            problems.append(
                FieldViolation(f"{path}.{key}", f"unknown field; {plan.name} has {known}")
            )
        elif field.name in given:
            problems.append(FieldViolation(f"{path}.{key}", "given twice (proto and JSON name)"))
        elif item is not None:  # JSON null: not set
            given[field.name] = item
    out: dict[str, Any] = {}
    for field in plan.fields:
        name = field.name
        if name not in given:
            if field.required:
                problems.append(FieldViolation(f"{path}.{name}", _missing(field)))
            elif not field.presence:
                out[name] = _default(field)
            continue
        item = given[name]
        if field.repeated:
            where = f"{path}.{name}"
            if not isinstance(item, list):
                problems.append(FieldViolation(where, "expected a JSON array"))
                continue
            out[name] = [
                _value(field, element, f"{where}[{i}]", problems)[0]
                for i, element in enumerate(item)
            ]
            if field.required and not item:
                problems.append(FieldViolation(where, "required: at least one"))
            continue
        if field.message is not None:
            out[name] = _convert(item, field.message, f"{path}.{name}", problems)
            continue
        # a scalar (or Timestamp): its path is only written into a violation
        rendered, empty, problem = _scalar(field, item)
        if problem is not None:
            problems.append(FieldViolation(f"{path}.{name}", problem))
        elif field.required and empty:
            problems.append(FieldViolation(f"{path}.{name}", _missing(field)))
        out[name] = rendered
    return out


def _missing(field: _Field) -> str:
    if field.enum is not None:
        return "required: one of " + ", ".join(n for n, number in field.enum.items() if number)
    return "required"


def _value(
    field: _Field, item: Any, where: str, problems: list[FieldViolation]
) -> tuple[Any, bool]:
    """(the proto JSON of one value, whether it is the empty/unspecified value)."""
    if field.message is not None:
        return _convert(item, field.message, where, problems), False
    rendered, empty, problem = _scalar(field, item)
    if problem is not None:
        problems.append(FieldViolation(where, problem))
    return rendered, empty


def _scalar(field: _Field, item: Any) -> tuple[Any, bool, str | None]:
    """(the proto JSON of one value that is not a message, whether it is the
    empty/unspecified value, the problem with it if any)."""
    kind = field.kind
    if field.timestamp:
        return _timestamp(item)
    if field.enum is not None:
        number = field.enum.get(item) if isinstance(item, str) else None
        if number is None:
            allowed = ", ".join(n for n, v in field.enum.items() if v)
            return item, False, f"expected one of {allowed}"
        return item, number == 0, None
    if kind == FD.TYPE_STRING:
        if not isinstance(item, str):
            return item, False, "expected a string"
        if item and field.pattern is not None and not field.pattern.search(item):
            return item, False, f"must match {field.pattern.pattern}"
        return item, item == "", None
    if kind == FD.TYPE_BOOL:
        if not isinstance(item, bool):
            return item, False, "expected true or false"
        return item, False, None
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            return item, False, "expected a finite number"
        return float(item), False, None
    if kind in _RANGES:
        number, problem = _integer(kind, item)
        return (str(number) if kind in _SIXTY_FOUR else number), False, problem
    if kind == FD.TYPE_BYTES:
        if not isinstance(item, str):
            return item, False, "expected a base64 string"
        return item, item == "", None
    return item, False, "unsupported field type"


def _integer(kind: int, item: Any) -> tuple[int, str | None]:
    low, high = _RANGES[kind]
    if isinstance(item, str):
        if not _INT_RE.fullmatch(item):
            return 0, _expected(kind)
        number = int(item)
    elif isinstance(item, bool) or not isinstance(item, int | float):
        return 0, _expected(kind)
    elif isinstance(item, float):
        if not item.is_integer():
            return 0, _expected(kind)
        if abs(item) > _EXACT:
            return 0, (
                "a JSON number beyond ±(2^53 - 1) is not exact here (JSON data is a "
                "google.protobuf.Struct of doubles): send it as a decimal string, "
                'e.g. "9007199254740993", or publish the typed payload message'
            )
        number = int(item)
    else:
        number = item
    if not low <= number <= high:
        return number, f"out of range: {_expected(kind)}"
    return number, None


def _expected(kind: int) -> str:
    low, high = _RANGES[kind]
    return f"expected an integer from {low} to {high}" + (
        " (as a decimal string, or a JSON number within ±(2^53 - 1))" if kind in _SIXTY_FOUR else ""
    )


# Already canonical proto JSON (UTC, Z, 0/3/6/9 fraction digits): kept as given once the
# date and time are checked; anything else goes through Timestamp (offsets, other precisions).
_CANONICAL_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z")


def _timestamp(item: Any) -> tuple[Any, bool, str | None]:
    if isinstance(item, str):
        if _CANONICAL_TS.fullmatch(item):
            try:
                datetime.fromisoformat(item[:19])
                return item, False, None
            except ValueError:
                pass
        else:
            ts = timestamp_pb2.Timestamp()
            try:
                ts.FromJsonString(item)
                return ts.ToJsonString(), False, None
            except ValueError:
                pass
    return item, False, "expected an RFC 3339 timestamp, e.g. 2026-11-27T10:15:00Z"


# json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False),
# without building the encoder for every event
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def resolve(
    event_type: str,
    data: Data | None,
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
    problems: list[FieldViolation] = []
    rendered = _convert(data or {}, _type_plan(event_type), f"{prefix}event.data", problems)
    if problems:
        return None, problems
    return Resolved(event_type, _dumps(rendered)), []


def _check_type(event_type: str, prefix: str) -> FieldViolation | None:
    field = f"{prefix}event.type"
    if not event_type:
        return FieldViolation(field, "required: a catalog type such as reward.claimed")
    if catalog.is_publishable(event_type):
        return None
    info = catalog.info(event_type)
    if info is not None and info.origin == events_pb2.EVENT_ORIGIN_TEST:
        return FieldViolation(
            field,
            f"{event_type!r} is sent by the service to one endpoint (the test event or the "
            "verification challenge): it cannot be published",
        )
    if info is not None:
        return FieldViolation(
            field, f"{event_type!r} is an operational event type: the service sends it itself"
        )
    return FieldViolation(
        field, f"{event_type!r} is not in the catalog: {catalog.did_you_mean(event_type)}"
    )


def _resolve_typed(
    event_type: str, data: Data | None, payload: any_pb2.Any, prefix: str
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
    # always_print: a REQUIRED number may be 0; "" and the unspecified enum are caught
    as_json = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    problems: list[FieldViolation] = []
    rendered = _convert(as_json, _plan(message.DESCRIPTOR), root, problems)
    if problems:
        return None, problems
    return Resolved(info.name, _dumps(rendered)), []


def check_data(
    event_type: str, data: Mapping[str, Any], path: str = "data"
) -> tuple[str | None, list[FieldViolation]]:
    """``data`` of any catalog type (published or operational) checked against its
    payload message as publishing checks it: the rendered JSON, or the violations
    (field paths under ``path``). For the typed test event (``core/ping.py``)."""
    problems: list[FieldViolation] = []
    rendered = _convert(data, _type_plan(event_type), path, problems)
    return (None, problems) if problems else (_dumps(rendered), [])


def render_data(event_type: str, data: Mapping[str, Any]) -> str:
    """The delivered ``data`` of an event the service sends itself (``webhook.*``):
    checked against the type's payload like a published one, ``ValueError`` if
    it does not fit (a bug, not a client's mistake)."""
    problems: list[FieldViolation] = []
    rendered = _convert(data, _type_plan(event_type), "data", problems)
    if problems:
        raise ValueError(
            f"{event_type} data does not fit its payload message: "
            + "; ".join(f"{p.field}: {p.description}" for p in problems)
        )
    return _dumps(rendered)
