"""protoc plugin: OpenAPI 3.1 description of the REST API the gateway transcodes.

protoc hands a plugin a ``CodeGeneratorRequest`` on stdin (every .proto file
involved, with comments in ``source_code_info``) and reads a
``CodeGeneratorResponse`` from stdout. This one writes ``openapi.json``
describing what Envoy's gRPC-JSON transcoder serves, as configured in
``webhooks_service/gateway/bootstrap.py``:

- one operation per RPC with a ``google.api.http`` rule (GET query parameters
  from the request's scalar fields, ``body: "*"`` as the JSON request body);
- JSON field names are the proto names (``preserve_proto_field_names``);
  fields that are always printed (``always_print_primitive_fields``: scalars,
  enums and repeated fields that are not proto3 ``optional``) are ``required``
  in response schemas; enums are their value names; Timestamps RFC 3339 strings;
- ``(google.api.field_behavior) = REQUIRED`` -> required (and non-empty) in
  request schemas, ``OUTPUT_ONLY`` -> ``readOnly``; ``page_size`` query
  parameters are non-negative (AIP-158);
- every error is the ``Status`` envelope ``{"code", "message", "details"}``;
- bearer authentication (``authorization: Bearer <API key>``), except the
  operations in :data:`PUBLIC_OPERATIONS` (``security: []``).

Why our own: no offline OpenAPI 3 generator is available from the package
registries we use; protoc-gen-openapiv2 emits Swagger 2.0 and needs Go.

Run by scripts/codegen.py (``make gen``), which passes
``--openapi_opt=services=webhooks.v1.WebhookAdmin`` so that only the REST
service is described. Output is deterministic (sorted keys, fixed indent).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from typing import Any

import event_catalog  # scripts/event_catalog.py (this script's folder is on sys.path)
from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

from webhooks_service.protojson import json_schema  # the one proto -> JSON table

FDP = descriptor_pb2.FieldDescriptorProto
# googleapis-common-protos' stubs type these extensions too loosely for mypy.
FIELD_BEHAVIOR_EXT: Any = field_behavior_pb2.field_behavior
HTTP_EXT: Any = annotations_pb2.http
JsonObj = dict[str, Any]

WELL_KNOWN: dict[str, JsonObj] = {
    ".google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339 timestamp in UTC, e.g. 2026-11-27T10:15:00Z",
    },
    ".google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"},
    ".google.protobuf.Struct": {"type": "object"},
    ".google.protobuf.Value": {},
    ".google.protobuf.Empty": {"type": "object"},
}
# Well-known messages whose JSON form is one string: the transcoder reads them from
# one query parameter (``?since=2026-11-27T10:15:00Z``).
SCALAR_JSON_TYPES = (".google.protobuf.Timestamp", ".google.protobuf.Duration")
# Statuses Envoy or the API may answer with, each with the envelope.
ERROR_STATUSES = {
    "400": "INVALID_ARGUMENT: malformed JSON, a wrong field type, an unknown query "
    "parameter, or a field that fails validation (see `details` for "
    "google.rpc.BadRequest field violations); FAILED_PRECONDITION: the state forbids "
    "the request (e.g. the organisation's configuration quota is reached)",
    "401": "UNAUTHENTICATED: missing or unknown API key",
    "403": "PERMISSION_DENIED: the key lacks the scope this call needs",
    "404": "NOT_FOUND: unknown id, or no REST endpoint at this path and method",
    "405": "UNIMPLEMENTED: the path exists but not with this method (see `allow`)",
    "409": "ALREADY_EXISTS / ABORTED",
    "413": "request body larger than the gateway's limit (1 MiB by default)",
    "429": "RESOURCE_EXHAUSTED: rate limited; `details` carry google.rpc.RetryInfo",
    "503": "UNAVAILABLE: no API process answered, or the database is unreachable",
}


class Index:
    """Messages, enums and comments of every file in the request, by full name."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.comments: dict[str, str] = {}  # full name (fields: msg.field) -> comment
        for f in files:
            self._add_file(f)

    def _add_file(self, f: descriptor_pb2.FileDescriptorProto) -> None:
        by_path = {tuple(loc.path): loc.leading_comments for loc in f.source_code_info.location}
        prefix = f".{f.package}" if f.package else ""

        def comment(path: tuple[int, ...]) -> str:
            return _clean(by_path.get(path, ""))

        def add_enum(
            e: descriptor_pb2.EnumDescriptorProto, scope: str, path: tuple[int, ...]
        ) -> None:
            name = f"{scope}.{e.name}"
            self.enums[name] = e
            self.comments[name] = comment(path)
            for i, v in enumerate(e.value):
                self.comments[f"{name}.{v.name}"] = comment((*path, 2, i))

        def add_message(
            m: descriptor_pb2.DescriptorProto, scope: str, path: tuple[int, ...]
        ) -> None:
            name = f"{scope}.{m.name}"
            self.messages[name] = m
            self.comments[name] = comment(path)
            for i, fld in enumerate(m.field):
                self.comments[f"{name}.{fld.name}"] = comment((*path, 2, i))
            for i, nested in enumerate(m.nested_type):
                add_message(nested, name, (*path, 3, i))
            for i, e in enumerate(m.enum_type):
                add_enum(e, name, (*path, 4, i))

        for i, m in enumerate(f.message_type):
            add_message(m, prefix, (4, i))
        for i, e in enumerate(f.enum_type):
            add_enum(e, prefix, (5, i))
        for si, svc in enumerate(f.service):
            sname = f"{prefix}.{svc.name}"
            self.comments[sname] = comment((6, si))
            for mi, method in enumerate(svc.method):
                self.comments[f"{sname}.{method.name}"] = comment((6, si, 2, mi))


def _clean(text: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in text.strip("\n").split("\n")]
    return "\n".join(lines).strip()


def _short(full_name: str) -> str:
    return full_name.rsplit(".", 1)[-1]


def _behaviors(field: descriptor_pb2.FieldDescriptorProto) -> set[int]:
    return set(field.options.Extensions[FIELD_BEHAVIOR_EXT])


class Builder:
    def __init__(self, index: Index) -> None:
        self.index = index
        self.schemas: dict[str, JsonObj] = {}
        self.response_messages: set[str] = set()

    def ref(self, type_name: str, *, response: bool) -> JsonObj:
        if type_name in WELL_KNOWN:
            return dict(WELL_KNOWN[type_name])
        if response:
            self.response_messages.add(type_name)
        short = _short(type_name)
        if short not in self.schemas:
            self.schemas[short] = {}  # placeholder: breaks recursion
            if type_name in self.index.enums:
                self.schemas[short] = self.enum_schema(type_name)
            else:
                self.schemas[short] = self.message_schema(type_name, response=response)
        return {"$ref": f"#/components/schemas/{short}"}

    def enum_schema(self, name: str) -> JsonObj:
        enum = self.index.enums[name]
        lines = [self.index.comments.get(name, "")]
        for v in enum.value:
            doc = self.index.comments.get(f"{name}.{v.name}", "")
            lines.append(f"- `{v.name}`" + (f": {doc}" if doc else ""))
        return {
            "type": "string",
            "enum": [v.name for v in enum.value],
            "description": "\n".join(line for line in lines if line),
        }

    def field_schema(
        self, field: descriptor_pb2.FieldDescriptorProto, *, response: bool
    ) -> JsonObj:
        if field.type == FDP.TYPE_MESSAGE:
            entry = self.index.messages.get(field.type_name)
            if entry is not None and entry.options.map_entry:
                value = self.field_schema(entry.field[1], response=response)
                return {"type": "object", "additionalProperties": value}
            item = self.ref(field.type_name, response=response)
        elif field.type == FDP.TYPE_ENUM:
            item = self.ref(field.type_name, response=response)
        else:
            item = json_schema(field.type, formats=True)
        if field.label == FDP.LABEL_REPEATED:
            return {"type": "array", "items": item}
        return item

    def message_schema(self, name: str, *, response: bool) -> JsonObj:
        msg = self.index.messages[name]
        props: JsonObj = {}
        required: list[str] = []
        for field in msg.field:
            schema = self.field_schema(field, response=response)
            doc = self.index.comments.get(f"{name}.{field.name}", "")
            behaviors = _behaviors(field)
            if field_behavior_pb2.OUTPUT_ONLY in behaviors:
                schema["readOnly"] = True
            if field_behavior_pb2.REQUIRED in behaviors and not response:
                if schema.get("type") == "string":
                    schema["minLength"] = 1
                elif schema.get("type") == "array":
                    schema["minItems"] = 1
            if doc:
                schema = {**schema, "description": doc}
            props[field.name] = schema
            always_printed = (
                field.label == FDP.LABEL_REPEATED
                or (field.type != FDP.TYPE_MESSAGE and not field.proto3_optional)
            ) and not field.HasField("oneof_index")
            if (response and always_printed) or (
                not response and field_behavior_pb2.REQUIRED in behaviors
            ):
                required.append(field.name)
        result: JsonObj = {"type": "object", "properties": props}
        if not response:
            result["additionalProperties"] = False  # the gateway refuses unknown fields
        if required:
            result["required"] = required
        doc = self.index.comments.get(name, "")
        if doc:
            result["description"] = doc
        return result


def _error_components() -> JsonObj:
    """The envelope, with its details typed: the generated clients get field
    violations and retry delays as classes, not untyped dicts."""
    return {
        "Status": {
            "type": "object",
            "description": "The error envelope (google.rpc.Status) of every error answer, "
            "the API's and the gateway's own alike.",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {
                    "type": "integer",
                    "description": "google.rpc.Code, e.g. 3 INVALID_ARGUMENT, 5 NOT_FOUND, "
                    "7 PERMISSION_DENIED, 14 UNAVAILABLE, 16 UNAUTHENTICATED",
                },
                "message": {"type": "string", "description": "For developers, in English."},
                "details": {
                    "type": "array",
                    "items": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/BadRequest"},
                            {"$ref": "#/components/schemas/RetryInfo"},
                        ]
                    },
                    "description": "Typed details, told apart by `@type`: INVALID_ARGUMENT "
                    "errors caused by a field carry a BadRequest (which fields, what is "
                    "allowed); rate-limited ones a RetryInfo. Empty otherwise.",
                },
            },
        },
        "BadRequest": {
            "type": "object",
            "description": "google.rpc.BadRequest, a detail of INVALID_ARGUMENT errors: "
            "which request fields or query parameters are wrong, and why.",
            "required": ["@type", "field_violations"],
            "properties": {
                "@type": {
                    "type": "string",
                    "enum": ["type.googleapis.com/google.rpc.BadRequest"],
                },
                "field_violations": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/FieldViolation"},
                },
            },
        },
        "FieldViolation": {
            "type": "object",
            "description": "One wrong field: its name as in this description (list "
            "elements as `event_types[1]`), and what is allowed.",
            "required": ["field", "description"],
            "properties": {
                "field": {"type": "string"},
                "description": {"type": "string"},
                "reason": {"type": "string"},
            },
        },
        "RetryInfo": {
            "type": "object",
            "description": "google.rpc.RetryInfo, a detail of RESOURCE_EXHAUSTED (429) "
            "errors: how long to wait before retrying (also the Retry-After header).",
            "required": ["@type", "retry_delay"],
            "properties": {
                "@type": {
                    "type": "string",
                    "enum": ["type.googleapis.com/google.rpc.RetryInfo"],
                },
                "retry_delay": {
                    "type": "string",
                    "pattern": "^-?[0-9]+(\\.[0-9]+)?s$",
                    "description": "A duration in seconds, e.g. `1.5s`.",
                },
            },
        },
    }


def _referenced(spec: JsonObj) -> set[str]:
    """Names of the schemas reachable from the paths (through every $ref)."""
    schemas: JsonObj = spec["components"]["schemas"]
    seen: set[str] = set()
    prefix = "#/components/schemas/"

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(prefix):
                name = ref[len(prefix) :]
                if name not in seen:
                    seen.add(name)
                    walk(schemas[name])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec["paths"])
    walk(spec["components"]["responses"])
    return seen


def _http_rule(method: descriptor_pb2.MethodDescriptorProto) -> tuple[str, str, str] | None:
    if not method.options.HasExtension(HTTP_EXT):
        return None
    rule: http_pb2.HttpRule = method.options.Extensions[HTTP_EXT]
    pattern = rule.WhichOneof("pattern")
    if pattern is None:
        return None
    if pattern == "custom":
        return rule.custom.kind.lower(), rule.custom.path, rule.body
    return pattern, getattr(rule, pattern), rule.body


def build(
    request: plugin_pb2.CodeGeneratorRequest,
    services: set[str] | None,
    page_size_max: int | None = None,
) -> JsonObj:
    index = Index(request.proto_file)
    builder = Builder(index)
    paths: JsonObj = {}
    titles: list[str] = []
    for f in request.proto_file:
        if f.name not in request.file_to_generate:
            continue
        for svc in f.service:
            sname = f"{f.package}.{svc.name}"
            if services is not None and sname not in services:
                continue
            titles.append(index.comments.get(f".{sname}", ""))
            for method in svc.method:
                rule = _http_rule(method)
                if rule is None:
                    continue
                verb, path, body = rule
                paths.setdefault(path, {})[verb] = _operation(
                    builder, index, f".{sname}", method, path, body, page_size_max
                )
    spec: JsonObj = {
        "openapi": "3.1.0",
        "info": {
            "title": "Webhooks admin REST API",
            "version": "v1",
            "description": "\n\n".join(t for t in titles if t)
            + "\n\nServed by the Envoy gateway (gRPC-JSON transcoding of "
            "webhooks.v1.WebhookAdmin). Generated from protos/ by "
            "scripts/protoc_gen_openapi.py; do not edit.",
        },
        "servers": [
            {
                "url": "http://127.0.0.1:8080",
                "description": "The default gateway address. The copy a gateway serves "
                "(GET /webhooks/openapi.json) names the address it is served from.",
            }
        ],
        "security": [{"bearerAuth": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`whk_…`) created with "
                    "`webhooks keys create`; scopes webhooks:read / webhooks:write.",
                }
            },
            "responses": {
                "Error": {
                    "description": "An error, as the Status envelope.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Status"}}
                    },
                }
            },
            "schemas": dict(sorted({**builder.schemas, **_error_components()}.items())),
        },
    }
    # Only what the paths use: an unreferenced schema becomes a stray class in
    # generated clients (the request messages of GET and path-only calls).
    used = _referenced(spec)
    spec["components"]["schemas"] = {
        k: v for k, v in spec["components"]["schemas"].items() if k in used
    }
    return spec


# Served without an API key: the same methods as webhooks_service.api.auth
# PUBLIC_METHODS (tests/test_signing_ed25519.py holds them equal).
PUBLIC_OPERATIONS = frozenset({"GetSigningKeys"})


def _operation(
    builder: Builder,
    index: Index,
    service: str,
    method: descriptor_pb2.MethodDescriptorProto,
    path: str,
    body: str,
    page_size_max: int | None = None,
) -> JsonObj:
    doc = index.comments.get(f"{service}.{method.name}", "")
    op: JsonObj = {
        "operationId": method.name,
        "tags": [_short(service)],
        "summary": doc.split(". ")[0].split("\n\n")[0].replace("\n", " ").rstrip("."),
        "description": doc,
    }
    if method.name in PUBLIC_OPERATIONS:
        op["security"] = []
    request_msg = index.messages[method.input_type]
    # "{name}" or "{name=pattern}", also before a custom verb ("{name}:retry").
    path_params = set(re.findall(r"\{([^}=]+)", path))
    params: list[JsonObj] = []
    for name in sorted(path_params):
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    if body == "*":
        schema = builder.ref(method.input_type, response=False)
        # A body with no required field may be left out (e.g. CreatePortalSession).
        body_required = bool(
            builder.message_schema(method.input_type, response=False).get("required")
        )
        if path_params:
            # The path carries these fields; repeated in the body they would
            # collide (the gateway rejects that), so the body schema omits them.
            full = builder.message_schema(method.input_type, response=False)
            props = {k: v for k, v in full["properties"].items() if k not in path_params}
            required = [r for r in full.get("required", []) if r not in path_params]
            schema = {**full, "properties": props}
            schema.pop("required", None)
            if required:
                schema["required"] = required
            body_required = bool(required)
        op["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": schema}},
        }
    else:
        for field in request_msg.field:
            if field.name in path_params or field.name == body:
                continue
            if field.type == FDP.TYPE_MESSAGE and field.type_name not in SCALAR_JSON_TYPES:
                continue  # nested messages would be dotted parameters; none in our API
            schema = builder.field_schema(field, response=False)
            if "$ref" in schema:
                schema = builder.schemas[schema["$ref"].rsplit("/", 1)[1]]
            if field.name == "page_size" and schema.get("type") == "integer":
                # AIP-158; the service's one rule (core/listing.py, passed by codegen.py).
                schema = {**schema, "minimum": 0}
                if page_size_max is not None:
                    schema["maximum"] = page_size_max
            param: JsonObj = {"name": field.name, "in": "query", "schema": schema}
            doc_f = index.comments.get(f"{method.input_type}.{field.name}", "")
            if doc_f:
                param["description"] = doc_f
            if field.label == FDP.LABEL_REPEATED:
                param.update(style="form", explode=True)
            params.append(param)
    if params:
        op["parameters"] = params
    responses: JsonObj = {
        "200": {
            "description": "OK",
            "content": {
                "application/json": {"schema": builder.ref(method.output_type, response=True)}
            },
        }
    }
    for status, text in ERROR_STATUSES.items():
        responses[status] = {"$ref": "#/components/responses/Error", "description": text}
    responses["default"] = {"$ref": "#/components/responses/Error"}
    op["responses"] = responses
    return op


# -- the event catalog: the top-level `webhooks` section and the event type values --

STANDARD_WEBHOOKS_HEADERS = [
    (
        "webhook-id",
        "The event id: the same on every attempt of this event, the key to dedupe on.",
        {"type": "string"},
    ),
    (
        "webhook-timestamp",
        "Unix seconds of this attempt; reject deliveries older than a few minutes.",
        {"type": "string", "pattern": "^[0-9]+$"},
    ),
    (
        "webhook-signature",
        'Space-separated "v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{body}>" '
        "(Standard Webhooks), one per signing secret (two during a rotation); "
        'with the ed25519 scheme "v1a,<base64 ed25519 signature of the same>".',
        {"type": "string", "pattern": "^v1a?,"},
    ),
]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace(".", "_").split("_"))


def add_event_catalog(spec: JsonObj, entries: list[Any]) -> None:
    """The OpenAPI 3.1 ``webhooks`` section (one POST per event type, the delivered
    body with the typed ``data``, the Standard Webhooks headers) and the valid
    ``event_types`` values; the schemas are those ListEventTypes serves."""
    schemas = spec["components"]["schemas"]
    spec["webhooks"] = _webhooks_section(entries, schemas)
    _event_type_values(spec, entries)
    spec["components"]["schemas"] = dict(sorted(schemas.items()))


def _webhooks_section(entries: list[Any], schemas: JsonObj) -> JsonObj:
    webhooks: JsonObj = {}
    for entry in entries:
        data_name = entry.payload.rsplit(".", 1)[-1]
        data = {k: v for k, v in entry.schema.items() if k not in ("$schema", "title")}
        schemas[data_name] = data
        body_name = f"{data_name}Event"
        schemas[body_name] = {
            "type": "object",
            "description": f"The body delivered for `{entry.name}`: {entry.description}",
            "required": ["id", "type", "timestamp", "data"],
            "properties": {
                "id": {"type": "string", "description": "The event id (= `webhook-id`)."},
                "type": {"type": "string", "const": entry.name},
                "timestamp": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When the event happened (RFC 3339, UTC).",
                },
                "data": {"$ref": f"#/components/schemas/{data_name}"},
            },
        }
        webhooks[entry.name] = {
            "post": {
                "operationId": f"on{_camel(entry.name)}",
                "tags": [entry.category],
                "summary": entry.description.split("\n")[0],
                "description": f"{entry.description}\n\nSent to every enabled configuration "
                f"subscribed to `{entry.name}`. Verify the signature over the raw body, "
                "dedupe on `webhook-id`, answer 2xx once done.",
                "security": [],
                "parameters": [
                    {
                        "name": name,
                        "in": "header",
                        "required": True,
                        "description": doc,
                        "schema": schema,
                    }
                    for name, doc, schema in STANDARD_WEBHOOKS_HEADERS
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{body_name}"},
                            "example": {
                                "id": "evt_5b0e6f1d2c3a4b5c6d7e8f90",
                                "type": entry.name,
                                "timestamp": "2026-11-27T10:15:00Z",
                                "data": entry.example,
                            },
                        }
                    },
                },
                "responses": {
                    "2XX": {"description": "Delivered: no retry."},
                    "default": {
                        "description": "Not delivered: 5xx, 3xx, 408 and 429 are retried "
                        "with backoff (408/429 honour Retry-After); other 4xx are final; "
                        "410 Gone also disables the endpoint."
                    },
                },
            }
        }
    return webhooks


# Sent only to the one endpoint concerned (EVENT_ORIGIN_TEST): never subscribed to.
RESERVED_TYPES = frozenset({"webhook.ping", "webhook.verification"})


def _event_type_values(spec: JsonObj, entries: list[Any]) -> None:
    """``event_types`` of configurations: a catalog type, ``category.*`` or ``*``; the
    ``event_type`` log filter: any type (the reserved ones included). Listed as
    ``examples``, not an ``enum``: the API checks them and answers with the closest
    valid names, and generated clients keep taking plain strings."""
    subscribable = [e.name for e in entries if e.name not in RESERVED_TYPES]
    categories = list(dict.fromkeys(e.category for e in entries if e.name in subscribable))
    patterns = ["*", *(f"{c}.*" for c in categories), *subscribable]
    schemas = spec["components"]["schemas"]
    for name in ("PutWebhookConfigRequest", "WebhookConfig"):
        prop = schemas.get(name, {}).get("properties", {}).get("event_types")
        if prop is not None:
            prop["items"] = {
                **prop.get("items", {"type": "string"}),
                "description": "An event type (see the `webhooks` section and GET "
                "/webhooks/event-types), a category wildcard such as `reward.*`, or `*`; "
                "`examples` lists every valid value.",
                "examples": patterns,
            }
    logs = spec["paths"].get("/webhooks/logs", {}).get("get", {})
    for param in logs.get("parameters", []):
        if param["name"] == "event_type":
            param["schema"] = {**param["schema"], "examples": [e.name for e in entries]}


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    options = dict(part.split("=", 1) for part in request.parameter.split(",") if "=" in part)
    services = set(options["services"].split("+")) if options.get("services") else None
    page_size_max = int(options["page_size_max"]) if options.get("page_size_max") else None
    spec = build(request, services, page_size_max)
    add_event_catalog(spec, event_catalog.catalog(request.proto_file))
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    out = response.file.add()
    out.name = options.get("out", "openapi.json")
    out.content = json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
    sys.stdout.buffer.write(response.SerializeToString())


if __name__ == "__main__":
    main()
