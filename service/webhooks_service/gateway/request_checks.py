"""The checks every REST request passes at the gateway, before the API sees it.

In the order a request meets them (the REST listener's codec, then its HTTP
filters, bootstrap.py):

1. ``headers``: at most ``max_request_headers_kb`` KiB of headers
   and :data:`MAX_HEADERS_COUNT` of them, sent within
   ``request_headers_timeout_s`` (the connection manager; past them 431 or a
   closed connection).
2. ``body size``: the whole request is buffered and refused with 413 past
   ``max_request_bytes``, before any parsing.
3. ``header names``: a header whose name is not a gRPC metadata key
   (:data:`GRPC_METADATA_KEY`, e.g. ``x#y``) is dropped: forwarded, it would
   make the gRPC server fail the call with INTERNAL.
4. ``request shape`` (``gateway/request_check.lua``): per REST operation of
   ``openapi.json`` (:func:`request_check_rules`), every query parameter known,
   given once and of its type; the JSON body well-formed, an object, every
   field known, given once and of its type. Its 400s are the API's envelope
   with BadRequest field violations, marked for the local-reply mappers
   (replies.py). A path under ``/webhooks/`` that the API lacks is its 404.
5. ``transcoder``: :data:`TRANSCODER_VALIDATION` (an unknown method or query
   parameter, a body field that collides with a path binding).

Value rules (ranges, formats of ids, the event catalog) stay with the API,
which answers in the same envelope.
"""

from __future__ import annotations

import json
import re
from typing import Any

from webhooks_service.gateway.settings import GatewayConfig

__all__ = [
    "GRPC_METADATA_KEY",
    "MAX_HEADERS_COUNT",
    "OPENAPI_PATH",
    "REQUEST_CHECK_FILTER",
    "TRANSCODER_VALIDATION",
    "body_size_filter",
    "header_names_filter",
    "request_check_rules",
    "request_shape_filter",
]

MAX_HEADERS_COUNT = 100  # 1. more headers than this: 431

# 3. The characters of a gRPC metadata key, as a Lua character class.
GRPC_METADATA_KEY = "0-9a-z_.%-"

# 4. The request shape check's filter name: routes that answer for themselves
# (the OpenAPI description, native gRPC) refer to it.
REQUEST_CHECK_FILTER = "webhooks.request_check"
OPENAPI_PATH = "/webhooks/openapi.json"  # served by the gateway (routes.py), not checked

# 5. What the transcoder refuses itself.
TRANSCODER_VALIDATION: dict[str, bool] = {
    "reject_unknown_method": True,
    # A misspelt filter (?config=…, ?pagesize=…) is a 400, not a silently
    # unfiltered list.
    "reject_unknown_query_parameters": True,
    "reject_binding_body_field_collisions": True,
}

_LUA_FILTER = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"


def _lua_filter(name: str, source: str) -> dict[str, Any]:
    return {
        "name": name,
        "typed_config": {"@type": _LUA_FILTER, "default_source_code": {"inline_string": source}},
    }


# --- 2. body size --------------------------------------------------------------


def body_size_filter(max_request_bytes: int) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.buffer",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": max_request_bytes,
        },
    }


# --- 3. header names -----------------------------------------------------------


def header_names_filter() -> dict[str, Any]:
    """Drops every header whose name is not a gRPC metadata key (pseudo-headers are kept)."""
    source = f"""\
function envoy_on_request(handle)
  local headers = handle:headers()
  local bad = nil
  for key, _ in pairs(headers) do
    if key:sub(1, 1) ~= ":" and key:find("[^{GRPC_METADATA_KEY}]") then
      bad = bad or {{}}
      bad[#bad + 1] = key
    end
  end
  if bad then
    for _, key in ipairs(bad) do headers:remove(key) end
  end
end
"""
    return _lua_filter("envoy.filters.http.lua", source)


# --- 4. request shape ------------------------------------------------------------


def _spec(schema: dict[str, Any], components: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the request check needs to know about one OpenAPI schema."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _spec(components[ref.rsplit("/", 1)[1]], components)
    kind = schema.get("type")
    if kind == "string":
        if isinstance(schema.get("enum"), list):
            return {"kind": "enum", "values": list(schema["enum"])}
        if schema.get("format") == "date-time":
            return {"kind": "timestamp"}
        return {"kind": "string"}
    if kind in ("integer", "boolean"):
        return {"kind": kind}
    if kind == "array":
        items = schema.get("items")
        return {
            "kind": "array",
            "items": _spec(items if isinstance(items, dict) else {}, components),
        }
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {"kind": "object"}
        return {
            "kind": "object",
            "fields": {name: _spec(sub, components) for name, sub in props.items()},
            "names": sorted(props),
        }
    return {"kind": "any"}


def _lua_path(path: str) -> str:
    """``/webhooks/configs/{config_id}:replay`` -> an anchored Lua pattern."""
    parts = re.split(r"\{[^}]*\}", path)
    escaped = [re.sub(r"([^A-Za-z0-9])", r"%\1", part) for part in parts]
    return "^" + "[^/]+".join(escaped) + "$"


def request_check_rules(openapi: dict[str, Any]) -> list[dict[str, Any]]:
    """The request check's RULES (see gateway/request_check.lua), one per REST operation:
    ``{method, path (a Lua pattern), shown, op, params: {name: spec}, body: spec}``."""
    components: dict[str, dict[str, Any]] = openapi["components"]["schemas"]
    rules: list[dict[str, Any]] = []
    paths: dict[str, dict[str, dict[str, Any]]] = openapi["paths"]
    for path, operations in sorted(paths.items()):
        for method, op in sorted(operations.items()):
            params = {
                str(p["name"]): _spec(p["schema"], components)
                for p in op.get("parameters", [])
                if p["in"] == "query"
            }
            rule: dict[str, Any] = {
                "method": method.upper(),
                "path": _lua_path(path),
                "shown": path,
                "op": op["operationId"],
                "params": params,
            }
            body = op.get("requestBody")
            if isinstance(body, dict):
                rule["body"] = _spec(body["content"]["application/json"]["schema"], components)
            rules.append(rule)
    return rules


def _lua(value: object) -> str:
    """A Lua literal for JSON-like ``value`` (dict -> table with string keys)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # Lua reads JSON string escapes we use
    if isinstance(value, list | tuple):
        return "{" + ", ".join(_lua(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{_lua(str(k))}] = {_lua(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Lua literal for {value!r}")


def request_shape_filter(config: GatewayConfig, openapi: dict[str, Any]) -> dict[str, Any]:
    """gateway/request_check.lua, with the RULES of ``openapi`` and OPENAPI_PATH before it."""
    source = (
        f"RULES = {_lua(request_check_rules(openapi))}\nOPENAPI_PATH = {_lua(OPENAPI_PATH)}\n"
        + config.files.request_check.read_text()
    )
    return _lua_filter(REQUEST_CHECK_FILTER, source)
