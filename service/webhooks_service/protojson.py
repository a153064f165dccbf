"""The proto3 JSON mapping of scalar field types, written once.

What each scalar type looks like in proto JSON: its JSON type, its range, and
whether it travels as a decimal string (64-bit integers, exact at any size).
``core/payloads.py`` checks published ``data`` against it;
``scripts/event_catalog.py`` (the event catalog's JSON Schemas) and
``scripts/protoc_gen_openapi.py`` (the OpenAPI schemas) render it with
:func:`json_schema`. The gateway's Lua request check keeps its own copy
(``gateway/request_check.lua``, generated from the OpenAPI description).
Base floor: imports only protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor as FD

__all__ = ["SCALARS", "Scalar", "json_schema"]


@dataclass(frozen=True)
class Scalar:
    json_type: str  # "number", "integer", "string" or "boolean"
    format: str | None = None  # the OpenAPI format
    low: int | None = None  # integers: the range
    high: int | None = None
    as_string: bool = False  # 64-bit integers: a decimal string
    base64: bool = False  # bytes


_I32 = Scalar("integer", "int32", -(2**31), 2**31 - 1)
_U32 = Scalar("integer", "int64", 0, 2**32 - 1)
_I64 = Scalar("string", "int64", -(2**63), 2**63 - 1, as_string=True)
_U64 = Scalar("string", "uint64", 0, 2**64 - 1, as_string=True)

# Keyed by the field type numbers (FieldDescriptor.TYPE_* ==
# FieldDescriptorProto.TYPE_*).
SCALARS: dict[int, Scalar] = {
    FD.TYPE_DOUBLE: Scalar("number", "double"),
    FD.TYPE_FLOAT: Scalar("number", "float"),
    FD.TYPE_INT32: _I32,
    FD.TYPE_SINT32: _I32,
    FD.TYPE_SFIXED32: _I32,
    FD.TYPE_UINT32: _U32,
    FD.TYPE_FIXED32: _U32,
    FD.TYPE_INT64: _I64,
    FD.TYPE_SINT64: _I64,
    FD.TYPE_SFIXED64: _I64,
    FD.TYPE_UINT64: _U64,
    FD.TYPE_FIXED64: _U64,
    FD.TYPE_BOOL: Scalar("boolean"),
    FD.TYPE_STRING: Scalar("string"),
    FD.TYPE_BYTES: Scalar("string", base64=True),
}

_DESCRIPTIONS = {
    True: "A 64-bit integer as a decimal string (proto JSON), exact at any size.",
    False: "An unsigned 64-bit integer as a decimal string (proto JSON).",
}


def json_schema(kind: int, *, formats: bool = False, describe: bool = False) -> dict[str, Any]:
    """The JSON Schema of a scalar field of type ``kind``.

    ``formats``: with OpenAPI's ``format`` keywords; ``describe``: 64-bit
    integers say in words that they are decimal strings.
    """
    s = SCALARS[kind]
    schema: dict[str, Any] = {"type": s.json_type}
    if formats and s.format is not None:
        schema["format"] = s.format
    if s.as_string:
        signed = s.low is not None and s.low < 0
        schema["pattern"] = "^-?[0-9]+$" if signed else "^[0-9]+$"
        if describe:
            schema["description"] = _DESCRIPTIONS[signed]
    elif s.low is not None:
        schema["minimum"] = s.low
        schema["maximum"] = s.high
    if s.base64:
        schema["contentEncoding"] = "base64"
    return schema
