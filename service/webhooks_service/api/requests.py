"""Request hygiene at the gRPC door: undecodable bytes and NUL characters.

Two kinds of bad input never reach a servicer's own validation:

- Bytes that do not parse as the request message — invalid UTF-8 in a string
  field (proto3 strings must be UTF-8), a corrupt wire format, or a
  ``google.protobuf.Struct`` nested deeper than protobuf's decoder allows
  (about 30 JSON levels; the limit is upb's, 100 message levels). grpcio would
  answer UNKNOWN ("Unexpected DecodeError"). :func:`lenient` wraps the
  method's deserializer so that such bytes become an :class:`Undecodable`
  value, which the auth interceptor turns into INVALID_ARGUMENT *after*
  checking the key (an anonymous caller still gets UNAUTHENTICATED).
- NUL characters (U+0000) in string fields. PostgreSQL's text type cannot
  store them (the insert or the filter fails, which was an INTERNAL error);
  no id, URL, name or description legitimately contains one.
  :func:`nul_violations` finds them, field by field. Event ``data`` (a
  Struct) is exempt: it is stored as JSON text, where NUL is escaped.
- Timestamps outside 0001-9999 (or with negative nanos), which protobuf
  accepts on the wire but cannot convert to a datetime.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from webhooks_service.errors import FieldViolation, InvalidArgument

__all__ = ["Undecodable", "lenient", "nul_violations", "undecodable_error"]

# Messages whose strings are user data, not identifiers (stored as JSON).
_DATA_TYPES = frozenset({"google.protobuf.Struct", "google.protobuf.Value"})
_MAX_VIOLATIONS = 10
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799  # 0001-01-01 .. 9999-12-31


@dataclass(frozen=True)
class Undecodable:
    """A request that did not parse; ``type_name`` is the expected message."""

    type_name: str
    reason: str


def lenient(
    deserializer: Callable[[bytes], Any] | None, type_name: str
) -> Callable[[bytes], Any] | None:
    """``deserializer`` that returns :class:`Undecodable` instead of raising."""
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return Undecodable(type_name, str(exc))

    return parse


def undecodable_error(request: Undecodable) -> InvalidArgument:
    """The client error for bytes that are not a valid request message."""
    reason = request.reason
    if "MaxDepth" in reason or "depth" in reason.lower():
        why = "nested too deeply (event data may nest about 30 levels)"
    elif "UTF-8" in reason or "utf-8" in reason.lower():
        why = "a string field is not valid UTF-8"
    else:
        why = "the bytes are not a valid protobuf message"
    return InvalidArgument(
        f"malformed {request.type_name}: {why}",
        [FieldViolation("request", why)],
    )


def nul_violations(message: Message, prefix: str = "") -> list[FieldViolation]:
    """A violation per string field (outside event data) containing U+0000,
    and per Timestamp outside years 1-9999 (Python cannot represent those; the
    conversion used to fail as INTERNAL). At most the first ten, in field order."""
    return [FieldViolation(prefix + where, why) for where, why in _problems(message)]


# What the walk does with a field, decided once per field descriptor.
_STRING, _MESSAGE, _TIMESTAMP, _SKIP = range(4)


@functools.cache
def _role(field: FieldDescriptor) -> tuple[int, bool]:
    """(what to check in the field, whether it is repeated)."""
    repeated = bool(field.is_repeated)
    if field.type == FieldDescriptor.TYPE_STRING:
        return _STRING, repeated
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return _SKIP, repeated
    kind = field.message_type
    if kind is None or kind.full_name in _DATA_TYPES or kind.GetOptions().map_entry:
        return _SKIP, repeated
    if kind.full_name == "google.protobuf.Timestamp":
        return _TIMESTAMP, repeated
    return _MESSAGE, repeated


def _problems(message: Message) -> list[tuple[str, str]]:
    """(path relative to ``message``, description) of the first ten problems: paths
    are only built for a problem, so a clean request costs the walk alone."""
    found: list[tuple[str, str]] = []
    for field, value in message.ListFields():
        role, repeated = _role(field)
        if role == _SKIP:
            continue
        items = value if repeated else (value,)
        for i, item in enumerate(items):
            if role == _STRING:
                if "\x00" in item:
                    found.append((_where(field, i, repeated), "must not contain NUL (U+0000)"))
            elif role == _TIMESTAMP:
                problem = _timestamp_problem(item)
                if problem:
                    found.append((_where(field, i, repeated), problem))
            else:
                inner = _problems(item)
                if inner:
                    where = _where(field, i, repeated)
                    found.extend((f"{where}.{path}", why) for path, why in inner)
        if len(found) >= _MAX_VIOLATIONS:
            break
    return found[:_MAX_VIOLATIONS]


def _where(field: FieldDescriptor, i: int, repeated: bool) -> str:
    return f"{field.name}[{i}]" if repeated else field.name


def _timestamp_problem(ts: Any) -> str | None:
    """Why a Timestamp is outside what RFC 3339 (and Python) can represent."""
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS:
        return "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
    if not 0 <= ts.nanos <= 999_999_999:
        return "nanos must be 0 to 999999999"
    return None
