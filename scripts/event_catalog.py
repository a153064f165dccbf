"""The event catalog as data, derived from the protos: one entry per event type
with its description, the JSON Schema (draft 2020-12) of its delivered ``data``
and an example.

Used by ``scripts/codegen.py`` (``make gen``), which writes

- ``clients/python/webhooks/v1/event_types.json``: what ``ListEventTypes``
  answers (the service reads it at start-up), and
- ``docs/events.md``: the catalog for humans,

and by ``scripts/protoc_gen_openapi.py`` for the OpenAPI ``webhooks`` section.
Everything is read from ``FileDescriptorProto`` s with source info (comments):
the ``EventType`` enum of ``webhooks/v1/events.proto``, its ``wire_name`` and
``payload`` options, and the payload messages with their fields, comments,
``(google.api.field_behavior) = REQUIRED`` and ``example`` options.

The schema describes ``data`` exactly as the service delivers it, in proto
JSON: snake_case names; 64-bit integers as decimal strings; enums as their
names; Timestamps as RFC 3339 strings; every field without presence always
printed (so every such field is ``required`` in the schema, as receivers can
rely on it), ``optional`` and message fields only when set.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from webhooks_service.protojson import json_schema  # the one proto -> JSON table

FDP = descriptor_pb2.FieldDescriptorProto
# googleapis-common-protos' stubs type these extensions too loosely for mypy.
FIELD_BEHAVIOR_EXT: Any = field_behavior_pb2.field_behavior
JsonObj = dict[str, Any]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
EVENTS_FILE = "webhooks/v1/events.proto"
PACKAGE = "webhooks.v1"
CATALOG_ENUM = f"{PACKAGE}.EventType"

WELL_KNOWN: dict[str, JsonObj] = {
    ".google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339 timestamp in UTC, e.g. 2026-11-27T10:15:00Z",
    },
}


@dataclass(frozen=True)
class EventTypeEntry:
    name: str
    category: str
    description: str
    payload: str  # full message name, "" when the type has none yet
    schema: JsonObj
    example: JsonObj
    publish_required: tuple[str, ...] = ()  # fields marked REQUIRED (dotted for nested)

    def as_json(self) -> JsonObj:
        return {
            "name": self.name,
            "category": self.category,
            "description": self.description,
            "payload": self.payload,
            "schema": self.schema,
            "example": self.example,
        }


def _clean(text: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in text.strip("\n").split("\n")]
    return "\n".join(lines).strip()


class Protos:
    """Messages, enums, comments and custom options of a set of proto files."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        self.files = list(files)
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.comments: dict[str, str] = {}
        for f in self.files:
            self._index(f)
        self.pool = descriptor_pool.DescriptorPool()
        for f in self.files:
            self.pool.Add(f)
        self.classes = message_factory.GetMessageClassesForFiles(
            [f.name for f in self.files], self.pool
        )

    def _index(self, f: descriptor_pb2.FileDescriptorProto) -> None:
        by_path = {tuple(loc.path): loc.leading_comments for loc in f.source_code_info.location}
        prefix = f".{f.package}" if f.package else ""

        def add_enum(
            e: descriptor_pb2.EnumDescriptorProto, scope: str, path: tuple[int, ...]
        ) -> None:
            name = f"{scope}.{e.name}"
            self.enums[name] = e
            self.comments[name] = _clean(by_path.get(path, ""))
            for i, v in enumerate(e.value):
                self.comments[f"{name}.{v.name}"] = _clean(by_path.get((*path, 2, i), ""))

        def add_message(
            m: descriptor_pb2.DescriptorProto, scope: str, path: tuple[int, ...]
        ) -> None:
            name = f"{scope}.{m.name}"
            self.messages[name] = m
            self.comments[name] = _clean(by_path.get(path, ""))
            for i, fld in enumerate(m.field):
                self.comments[f"{name}.{fld.name}"] = _clean(by_path.get((*path, 2, i), ""))
            for i, nested in enumerate(m.nested_type):
                add_message(nested, name, (*path, 3, i))
            for i, e in enumerate(m.enum_type):
                add_enum(e, name, (*path, 4, i))

        for i, m in enumerate(f.message_type):
            add_message(m, prefix, (4, i))
        for i, e in enumerate(f.enum_type):
            add_enum(e, prefix, (5, i))

    def option(self, options: Any, options_type: str, extension: str) -> Any:
        """A custom option's value (None when unset or the option does not exist)."""
        try:
            ext: Any = self.pool.FindExtensionByName(extension)
        except KeyError:
            return None
        parsed = self.classes[options_type].FromString(options.SerializeToString())
        if not parsed.HasExtension(ext):
            return None
        return parsed.Extensions[ext]


def _required(field: descriptor_pb2.FieldDescriptorProto) -> bool:
    behaviors = field.options.Extensions[FIELD_BEHAVIOR_EXT]
    return field_behavior_pb2.REQUIRED in behaviors


class SchemaBuilder:
    def __init__(self, protos: Protos) -> None:
        self.protos = protos

    def pattern(self, field: descriptor_pb2.FieldDescriptorProto) -> str:
        value = self.protos.option(
            field.options, "google.protobuf.FieldOptions", f"{PACKAGE}.pattern"
        )
        return str(value or "")

    def enum_schema(self, name: str, *, required: bool) -> JsonObj:
        enum = self.protos.enums[name]
        values = [v.name for v in enum.value if not (required and v.number == 0)]
        lines = [self.protos.comments.get(name, "")]
        for v in enum.value:
            if v.name in values:
                doc = self.protos.comments.get(f"{name}.{v.name}", "")
                lines.append(f"- `{v.name}`" + (f": {doc}" if doc else ""))
        return {
            "type": "string",
            "enum": values,
            "description": "\n".join(line for line in lines if line),
        }

    def field_schema(
        self, field: descriptor_pb2.FieldDescriptorProto, seen: tuple[str, ...]
    ) -> JsonObj:
        required = _required(field)
        if field.type == FDP.TYPE_MESSAGE:
            if field.type_name in WELL_KNOWN:
                item = dict(WELL_KNOWN[field.type_name])
            else:
                item = self.message_schema(field.type_name, seen)
        elif field.type == FDP.TYPE_ENUM:
            item = self.enum_schema(field.type_name, required=required)
        else:
            item = json_schema(field.type, describe=True)
            if required and field.type == FDP.TYPE_STRING:
                item["minLength"] = 1
            pattern = self.pattern(field)
            if pattern:
                # the pattern applies to non-empty strings (empty: not set)
                item["pattern"] = pattern if required else f"^$|{pattern}"
        if field.label == FDP.LABEL_REPEATED:
            array: JsonObj = {"type": "array", "items": item}
            if required:
                array["minItems"] = 1
            return array
        return item

    def message_schema(self, name: str, seen: tuple[str, ...] = ()) -> JsonObj:
        if name in seen:
            raise ValueError(f"payload messages may not be recursive: {' -> '.join(seen)}")
        msg = self.protos.messages[name]
        props: JsonObj = {}
        required: list[str] = []
        for field in msg.field:
            schema = self.field_schema(field, (*seen, name))
            doc = self.protos.comments.get(f"{name}.{field.name}", "")
            if doc:
                own = schema.get("description")
                schema["description"] = (
                    f"{doc}\n\n{own}" if own and field.type != FDP.TYPE_MESSAGE else doc
                )
            props[field.name] = schema
            always_printed = field.label == FDP.LABEL_REPEATED or (
                field.type != FDP.TYPE_MESSAGE and not field.proto3_optional
            )
            if always_printed or _required(field):
                required.append(field.name)
        # No additionalProperties: false: the schema describes deliveries, and fields
        # are added over time (the evolution rules); receivers must accept them.
        result: JsonObj = {"type": "object", "properties": props}
        if required:
            result["required"] = required
        doc = self.protos.comments.get(name, "")
        if doc:
            result["description"] = doc
        return result


def catalog(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> list[EventTypeEntry]:
    """Every event type of the ``EventType`` enum, in enum order."""
    protos = Protos(files)
    builder = SchemaBuilder(protos)
    enum = protos.enums["." + CATALOG_ENUM]
    entries: list[EventTypeEntry] = []
    for value in enum.value:
        if value.number == 0:
            continue
        opts_type = "google.protobuf.EnumValueOptions"
        wire = protos.option(value.options, opts_type, f"{PACKAGE}.wire_name")
        payload = protos.option(value.options, opts_type, f"{PACKAGE}.payload") or ""
        description = protos.comments.get(f".{CATALOG_ENUM}.{value.name}", "")
        schema: JsonObj = {"$schema": DRAFT, "title": wire, "type": "object"}
        example: JsonObj = {}
        required: tuple[str, ...] = ()
        if payload:
            required = tuple(_required_paths(protos, "." + payload))
            body = builder.message_schema("." + payload)
            schema = {"$schema": DRAFT, "title": payload.rsplit(".", 1)[-1], **body}
            raw = protos.option(
                protos.messages["." + payload].options,
                "google.protobuf.MessageOptions",
                f"{PACKAGE}.example",
            )
            example = json.loads(raw) if raw else {}
        entries.append(
            EventTypeEntry(
                name=wire,
                category=wire.split(".", 1)[0],
                description=description,
                payload=payload,
                schema=schema,
                example=example,
                publish_required=required,
            )
        )
    return entries


def _required_paths(protos: Protos, name: str, prefix: str = "") -> list[str]:
    out: list[str] = []
    for field in protos.messages[name].field:
        if _required(field):
            out.append(prefix + field.name)
        if field.type == FDP.TYPE_MESSAGE and field.type_name in protos.messages:
            nested = f"{prefix}{field.name}{'[].' if field.label == FDP.LABEL_REPEATED else '.'}"
            out.extend(_required_paths(protos, field.type_name, nested))
    return out


def catalog_json(entries: list[EventTypeEntry]) -> str:
    doc = {
        "generated_by": "scripts/codegen.py from protos/webhooks/v1; do not edit",
        "event_types": [e.as_json() for e in entries],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _type_text(schema: JsonObj) -> str:
    kind = schema.get("type", "")
    if kind == "array":
        return f"list of {_type_text(schema['items'])}"
    if "enum" in schema:
        return "enum: " + ", ".join(f"`{v}`" for v in schema["enum"])
    if schema.get("format") == "date-time":
        return "timestamp (RFC 3339)"
    if kind == "string" and schema.get("pattern", "").endswith("[0-9]+$"):
        return "int64 as a decimal string"
    if kind == "integer":
        return f"integer ({schema['minimum']} to {schema['maximum']})"
    return str(kind)


def _field_rows(schema: JsonObj, publish_required: set[str], prefix: str = "") -> list[str]:
    rows: list[str] = []
    always = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        doc = prop.get("description", "").split("\n\n")[0].replace("\n", " ")
        path = f"{prefix}{name}"
        present = "always" if name in always else "when set"
        needed = "**required**" if path in publish_required else "optional"
        rows.append(f"| `{path}` | {_type_text(prop)} | {needed} | {present} | {doc} |")
        nested = prop.get("items", prop) if prop.get("type") == "array" else prop
        if nested.get("type") == "object" and "properties" in nested:
            suffix = "[]." if prop.get("type") == "array" else "."
            rows.extend(_field_rows(nested, publish_required, f"{path}{suffix}"))
    return rows


def events_markdown(entries: list[EventTypeEntry]) -> str:
    """docs/events.md: every type, its fields and an example."""
    out = [
        "# Event types",
        "",
        "<!-- Generated by `make gen` (scripts/event_catalog.py) from protos/webhooks/v1; "
        "do not edit. `make check-gen` fails when it is stale. -->",
        "",
        "Every delivery is a `POST` whose JSON body is "
        '`{"id", "type", "timestamp", "data"}`; `type` is one of the names below and '
        "`data` has that type's fields, in proto JSON: snake_case names, 64-bit "
        "integers as decimal strings (exact at any size), enums as their names, "
        "timestamps as RFC 3339 strings in UTC. A **required** field must be given "
        "(non-empty) on publish; a field marked *always* is in every delivery of the "
        "type (with its zero value when not set), the others only when set. Fields are "
        "only ever added, never removed, renamed or retyped: ignore the ones you do "
        "not know.",
        "",
        "The same catalog, with the JSON Schema (draft 2020-12) of each type's `data`, is "
        "served by `ListEventTypes` (`GET /webhooks/event-types`), printed by "
        "`webhooks event-types`, and described in the OpenAPI `webhooks` section "
        "(`GET /webhooks/openapi.json`).",
        "",
    ]
    categories = list(dict.fromkeys(e.category for e in entries))
    out += ["| type | description |", "|---|---|"]
    for e in entries:
        out.append(
            f"| [`{e.name}`](#{e.name.replace('.', '')}) | {e.description.replace(chr(10), ' ')} |"
        )
    out.append("")
    for category in categories:
        out += [f"## {category}", ""]
        for e in entries:
            if e.category != category:
                continue
            out += [f"### {e.name}", "", e.description, ""]
            if e.payload:
                out += [f"Payload message: `{e.payload}`.", ""]
            rows = _field_rows(e.schema, set(e.publish_required))
            if rows:
                out += [
                    "| field | type | on publish | in the delivery | description |",
                    "|---|---|---|---|---|",
                    *rows,
                    "",
                ]
            out += ["```json", json.dumps(e.example, indent=2, ensure_ascii=False), "```", ""]
    return "\n".join(out).rstrip("\n") + "\n"
