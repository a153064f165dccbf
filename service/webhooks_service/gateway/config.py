"""Render the Envoy bootstrap for the REST gateway from ``gateway/envoy.yaml.tmpl``.

The template, the descriptor set (``gateway/descriptor.pb``, written by ``make gen``)
and the OpenAPI description (``gateway/openapi.json``) live in the repository's
``gateway/`` folder, next to the protos they come from, not inside this package:
they are generated/edited with the contract, and Envoy reads them from disk.
:func:`find_gateway_dir` locates that folder: an explicit ``--gateway-dir``
first, then the checkout this package is installed from (editable install, as
``make`` does), then ``./gateway`` under the working directory.

Why ``string.Template`` and not a template engine: the config has a handful of
scalar holes and two generated lists; a dependency for that is not worth it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from webhooks_service.errors import ConfigurationError
from webhooks_service.hostport import Address, parse_address

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "GRPC_CODE_FOR_HTTP_STATUS",
    "Address",
    "GatewayConfig",
    "GatewayFiles",
    "find_gateway_dir",
    "parse_address",
    "render",
]

DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
# The transcoder's response buffer: twice the API's default log page budget
# (core/logs.py DEFAULT_MAX_PAGE_BYTES, 4 MiB), which leaves room for one
# entry past the budget and for the JSON being longer than the protobuf.
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024

# google.rpc.Code for Envoy's own error replies, so that they read like the
# API's errors: {"code": <google.rpc.Code>, "message": …, "details": []}.
GRPC_CODE_FOR_HTTP_STATUS: dict[int, int] = {
    400: 3,  # INVALID_ARGUMENT: malformed JSON, wrong field type, unknown query parameter
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND: no REST endpoint at this path/method
    405: 12,  # UNIMPLEMENTED
    408: 4,  # DEADLINE_EXCEEDED: the client was too slow sending the request
    409: 10,  # ABORTED
    413: 8,  # RESOURCE_EXHAUSTED: request body over the gateway's limit
    429: 8,  # RESOURCE_EXHAUSTED
    431: 8,  # RESOURCE_EXHAUSTED: request headers too large
    500: 13,  # INTERNAL
    501: 12,  # UNIMPLEMENTED
    502: 14,  # UNAVAILABLE
    503: 14,  # UNAVAILABLE: no healthy upstream, connection refused
    504: 4,  # DEADLINE_EXCEEDED: upstream timeout
}
_UNKNOWN = 2  # google.rpc.Code.UNKNOWN, for any other error status


@dataclass(frozen=True)
class GatewayFiles:
    """The files Envoy reads: template, descriptor set, OpenAPI description."""

    template: Path
    descriptor: Path
    openapi: Path
    grpc_listener: Path
    request_check: Path  # the Lua request check (gateway/request_check.lua)
    dashboard: Path | None = None  # the dashboard's folder (gateway/dashboard/), if any

    @classmethod
    def in_dir(cls, directory: Path) -> GatewayFiles:
        files = cls(
            directory / "envoy.yaml.tmpl",
            directory / "descriptor.pb",
            directory / "openapi.json",
            directory / "grpc-listener.yaml.tmpl",
            directory / "request_check.lua",
            directory / "dashboard" if (directory / "dashboard").is_dir() else None,
        )
        missing = [
            p.name
            for p in (
                files.template,
                files.descriptor,
                files.openapi,
                files.grpc_listener,
                files.request_check,
            )
            if not p.is_file()
        ]
        if missing:
            raise ConfigurationError(
                f"gateway folder {directory} lacks {', '.join(missing)} (run `make gen`)"
            )
        return files


def find_gateway_dir(explicit: str | Path | None = None) -> Path:
    """The ``gateway/`` folder holding the template and the generated files."""
    if explicit:
        path = Path(explicit).resolve()
        if not (path / "envoy.yaml.tmpl").is_file():
            raise ConfigurationError(f"--gateway-dir {path}: no envoy.yaml.tmpl there")
        return path
    # service/webhooks_service/gateway/config.py -> the checkout's root
    checkout = Path(__file__).resolve().parents[3] / "gateway"
    for candidate in (checkout, Path.cwd() / "gateway"):
        if (candidate / "envoy.yaml.tmpl").is_file():
            return candidate
    raise ConfigurationError(
        "cannot find the gateway/ folder (envoy.yaml.tmpl, descriptor.pb); "
        "run from the repository or pass --gateway-dir"
    )


@dataclass(frozen=True)
class GatewayConfig:
    listen: Address
    upstreams: tuple[Address, ...]
    files: GatewayFiles
    admin_port: int = 0  # 0: a unix socket (admin_socket); else 127.0.0.1:admin_port
    admin_socket: str = ""  # the admin's unix socket path (EnvoyProcess fills it in)
    grpc_proxy_listen: Address | None = None  # optional native gRPC listener
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    # --- edge limits (#13)
    max_connections: int = 10_000  # downstream connections, all listeners (overload manager)
    request_headers_timeout_s: float = 10.0  # to receive a request's headers
    idle_timeout_s: float = 60.0  # idle connection / stream
    max_request_headers_kb: int = 16  # larger headers: 431
    health_check_interval_s: float = 1.0
    cors_allowed_origins: tuple[str, ...] = ()  # pages of these origins may call the API
    # Sent to every upstream call (x-webhooks-gateway-secret): serve believes the
    # client address header only with it (api/throttle.py). Empty: never sent.
    gateway_secret: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.upstreams:
            raise ConfigurationError("give at least one --upstream HOST:PORT")
        if self.max_request_bytes < 1024:
            raise ConfigurationError("max request bytes must be at least 1024")


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text)


def _local_reply_mappers(indent: int) -> str:
    """One mapper per error status, then a catch-all for any other status >= 400.

    Local replies include those to requests the transcoder has already turned
    into gRPC (e.g. 503 when no upstream answers): Envoy sends them as plain
    HTTP local replies, so the same mappers give them the envelope.
    """
    lines: list[str] = []

    def mapper(status_filter: str, code: int) -> None:
        lines.extend(
            [
                f"- filter: {status_filter}",
                "  body_format_override:",
                "    json_format:",
                f"      code: {code}",
                '      message: "%LOCAL_REPLY_BODY%"',
                "      details: []",
            ]
        )

    def status_filter(op: str, value: int) -> str:
        return (
            f"{{status_code_filter: {{comparison: {{op: {op}, "
            f"value: {{default_value: {value}, runtime_key: gateway.local_reply.unused}}}}}}}}"
        )

    # Hardening (#13): oversized headers are refused by the codec before the
    # method is read; they are a 431 RESOURCE_EXHAUSTED, not "not valid HTTP".
    mapper(status_filter("EQ", 431), GRPC_CODE_FOR_HTTP_STATUS[431])
    lines.extend(_api_voice_mappers())
    for status, code in GRPC_CODE_FOR_HTTP_STATUS.items():
        mapper(status_filter("EQ", status), code)
    mapper(status_filter("GE", 400), _UNKNOWN)
    pad = " " * indent
    return "\n".join(pad + line for line in lines)


# --- the API's voice for what Envoy itself answers ----------------------------
#
# Three kinds of replies that would otherwise speak Envoy's or protobuf's
# language: the Lua request check's own 400s (already the full envelope, so
# the local-reply mappers must pass them through), native gRPC sent to the
# REST port (a gRPC status naming where gRPC is served), and requests Envoy's
# HTTP codec refuses (e.g. a placeholder "whc_…" pasted raw into a URL).


def _api_voice_mappers() -> list[str]:
    """Local-reply mappers that come before the per-status envelope mappers."""
    return [
        # The request check's replies: the body is the finished envelope.
        "- filter:",
        "    metadata_filter:",
        "      matcher:",
        "        filter: webhooks.gateway",
        "        path: [{key: api_error}]",
        '        value: {string_match: {exact: "1"}}',
        "      match_if_key_not_found: false",
        "  body_format_override:",
        '    text_format_source: {inline_string: "%LOCAL_REPLY_BODY%"}',
        "    content_type: application/json",
        # Native gRPC (not transcoded): keep the text, Envoy makes it grpc-message.
        "- filter:",
        "    and_filter:",
        "      filters:",
        "      - header_filter:",
        "          header: {name: content-type, string_match: {prefix: application/grpc}}",
        "      - header_filter:",
        "          header: {name: x-envoy-original-method, present_match: true,"
        " invert_match: true}",
        "  body_format_override:",
        '    text_format_source: {inline_string: "%LOCAL_REPLY_BODY%"}',
        # Refused by Envoy's HTTP codec before any header was read: not valid HTTP.
        "- filter:",
        "    header_filter:",
        '      header: {name: ":method", present_match: true, invert_match: true}',
        "  body_format_override:",
        "    json_format:",
        "      code: 3",
        "      message: "
        + _q(
            "the request is not valid HTTP (%RESPONSE_CODE_DETAILS%); a URL may hold only "
            "ASCII, so percent-encode other characters; an id such as whc_… or dlv_… "
            "copied from the documentation is a placeholder to replace with a real one"
        ),
        "      details: []",
    ]


def _openapi_servers_lua() -> str:
    """The OpenAPI route's Lua: the served description names the address it is
    served from (scheme and Host of the request), not the generator's default."""
    return "\n".join(
        [
            "function envoy_on_request(handle)",
            "  local h = handle:headers()",
            '  local scheme = h:get("x-forwarded-proto") or h:get(":scheme") or "http"',
            '  local host = h:get(":authority") or ""',
            '  handle:streamInfo():dynamicMetadata():set("webhooks.gateway", "server",',
            '    scheme .. "://" .. host)',
            "end",
            "function envoy_on_response(handle)",
            '  local meta = handle:streamInfo():dynamicMetadata():get("webhooks.gateway")',
            '  local server = meta and meta["server"]',
            '  if not server or not server:match("^https?://[%w%.%-%[%]:]+$") then return end',
            '  handle:headers():remove("content-length")',
            "  local body = handle:body()",
            "  local text = body:getBytes(0, body:length())",
            "  local from, to = text:find(" + _q(OPENAPI_DEFAULT_SERVER) + ", 1, true)",
            "  if from then",
            "    local quoted = '\"' .. server .. '\"'",
            "    body:setBytes(text:sub(1, from - 1) .. quoted .. text:sub(to + 1))",
            "  end",
            "end",
        ]
    )


OPENAPI_PATH = "/webhooks/openapi.json"  # served by the gateway (envoy.yaml.tmpl)

# The servers[0].url the generator writes (scripts/protoc_gen_openapi.py); the
# served copy replaces it with the request's own scheme and host.
OPENAPI_DEFAULT_SERVER = '"http://127.0.0.1:8080"'


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


def _spec(schema: dict[str, object], components: dict[str, dict[str, object]]) -> dict[str, object]:
    """What the request check needs to know about one OpenAPI schema."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _spec(components[ref.rsplit("/", 1)[1]], components)
    kind = schema.get("type")
    if kind == "string":
        if isinstance(schema.get("enum"), list):
            return {"kind": "enum", "values": list(schema["enum"])}  # type: ignore[call-overload]
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


def request_check_rules(openapi: dict[str, object]) -> list[dict[str, object]]:
    """The request check's RULES (see gateway/request_check.lua), from openapi.json."""
    components: dict[str, dict[str, object]] = openapi["components"]["schemas"]  # type: ignore[index]
    rules: list[dict[str, object]] = []
    paths: dict[str, dict[str, dict[str, object]]] = openapi["paths"]  # type: ignore[assignment]
    for path, operations in sorted(paths.items()):
        for method, op in sorted(operations.items()):
            params = {
                str(p["name"]): _spec(p["schema"], components)
                for p in op.get("parameters", [])  # type: ignore[attr-defined]
                if p["in"] == "query"
            }
            rule: dict[str, object] = {
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


def _request_check_lua(config: GatewayConfig) -> str:
    openapi = json.loads(config.files.openapi.read_text())
    rules = request_check_rules(openapi)
    return (
        f"RULES = {_lua(rules)}\nOPENAPI_PATH = {_lua(OPENAPI_PATH)}\n"
        + config.files.request_check.read_text()
    )


def _block(text: str, indent: int) -> str:
    """``text`` as the lines of a YAML block scalar at ``indent``."""
    pad = " " * indent
    return "\n".join(pad + line if line.strip() else "" for line in text.splitlines())


def _grpc_elsewhere(config: GatewayConfig) -> str:
    where = (
        f"the gateway's gRPC listener {config.grpc_proxy_listen} or the API at "
        if config.grpc_proxy_listen is not None
        else "the API at "
    )
    return (
        "this is the REST gateway (HTTP+JSON, paths /webhooks/...); send native gRPC to "
        + where
        + ", ".join(str(u) for u in config.upstreams)
    )


def _lb_endpoints(upstreams: tuple[Address, ...], indent: int) -> str:
    pad = " " * indent
    return "\n".join(
        f"{pad}- endpoint: {{address: {{socket_address: "
        f"{{address: {_q(u.host)}, port_value: {u.port}}}}}}}"
        for u in upstreams
    )


def _path_match(path: str) -> str:
    """The route's path matcher: exact, or a regex for a templated path
    (``/webhooks/configs/{config_id}:replay``: one segment per variable, without
    ``:`` so that ``/webhooks/configs/{config_id}`` does not also match the custom methods)."""
    if "{" not in path:
        return f"path: {_q(path)}"
    parts = re.split(r"\{[^}]*\}", path)
    regex = "[^/:]+".join(re.escape(part) for part in parts)
    return f"safe_regex: {{regex: {_q(regex)}}}"


def _method_not_allowed_routes(openapi: Path, indent: int) -> str:
    """For each REST path, a route answering 405 (with ``allow``) to other methods.

    The transcoder is disabled on these routes; otherwise it would answer 404
    (unknown method) before the router sees the request.
    """
    try:
        paths: dict[str, dict[str, object]] = json.loads(openapi.read_text())["paths"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigurationError(f"{openapi}: not an OpenAPI description ({exc})") from exc
    lines: list[str] = []
    for path, operations in sorted(paths.items()):
        methods = sorted(m.upper() for m in operations)
        allow = ", ".join(methods)
        lines += [
            "- match:",
            f"    {_path_match(path)}",
            "    headers:",
            '    - name: ":method"',
            f"      string_match: {{safe_regex: {{regex: {_q('^(' + '|'.join(methods) + ')$')}}}}}",
            "      invert_match: true",
            "  direct_response:",
            "    status: 405",
            f"    body: {{inline_string: {_q(f'method not allowed here; use {allow}')}}}",
            "  response_headers_to_add:",
            f"  - header: {{key: allow, value: {_q(allow)}}}",
            "  typed_per_filter_config:",
            "    envoy.filters.http.grpc_json_transcoder:",
            '      "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig',
            "      disabled: true",
        ]
    pad = " " * indent
    return "\n".join(pad + line for line in lines)


def _edge_values(config: GatewayConfig) -> dict[str, str]:
    """The template values of the edge limits (#13)."""
    return {
        "max_connections": str(config.max_connections),
        "request_headers_timeout": f"{config.request_headers_timeout_s:g}s",
        "idle_timeout": f"{config.idle_timeout_s:g}s",
        "max_request_headers_kb": str(config.max_request_headers_kb),
    }


def _grpc_listener(config: GatewayConfig, indent: int) -> str:
    if config.grpc_proxy_listen is None:
        return ""
    text = Template(config.files.grpc_listener.read_text()).substitute(
        grpc_host=config.grpc_proxy_listen.host,
        grpc_port=config.grpc_proxy_listen.port,
        gateway_secret_header=_gateway_secret_header(config.gateway_secret, 10),
        **_edge_values(config),
    )
    pad = " " * indent
    return "\n".join(pad + line if line.strip() else "" for line in text.splitlines())


# --- the dashboard and CORS -------------------------------------------------

DASHBOARD_PREFIX = "/dashboard/"
DIRECT_RESPONSE_LIMIT = 1048576  # max_direct_response_body_size_bytes in the template
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}


def dashboard_csp(origins: tuple[str, ...]) -> str:
    """The dashboard's Content-Security-Policy: its own files only; framed only
    by itself and the CORS origins (the host platform that embeds it)."""
    ancestors = " ".join(("'self'", *origins))
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    )


def _dashboard_routes(config: GatewayConfig, indent: int) -> str:
    """GET/HEAD routes for every file of gateway/dashboard/ (``index.html`` also at
    ``/dashboard/``), and redirects from ``/`` and ``/dashboard`` to it."""
    folder = config.files.dashboard
    if folder is None:
        return ""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _CONTENT_TYPES)
    headers = [
        ("cache-control", "no-cache"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("content-security-policy", dashboard_csp(config.cors_allowed_origins)),
    ]
    get = '      string_match: {safe_regex: {regex: "^(GET|HEAD)$"}}'
    lines: list[str] = []
    for target in ("/", "/dashboard"):
        lines += [
            "- match:",
            f"    path: {_q(target)}",
            "    headers:",
            '    - name: ":method"',
            get,
            "  redirect: {path_redirect: " + _q(DASHBOARD_PREFIX) + ", response_code: FOUND}",
            "  typed_per_filter_config:",
            "    envoy.filters.http.grpc_json_transcoder:",
            '      "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig',
            "      disabled: true",
        ]
    for path in files:
        if path.stat().st_size > DIRECT_RESPONSE_LIMIT:
            raise ConfigurationError(
                f"{path}: larger than the gateway's direct-response limit ({DIRECT_RESPONSE_LIMIT})"
            )
        routes = [DASHBOARD_PREFIX + path.name]
        if path.name == "index.html":
            routes.insert(0, DASHBOARD_PREFIX)
        for route in routes:
            lines += [
                "- match:",
                f"    path: {_q(route)}",
                "    headers:",
                '    - name: ":method"',
                get,
                "  direct_response:",
                "    status: 200",
                f"    body: {{filename: {_q(str(path.resolve()))}}}",
                "  response_headers_to_add:",
                *(
                    f"  - header: {{key: {key}, value: {_q(value)}}}\n"
                    "    append_action: OVERWRITE_IF_EXISTS_OR_ADD"
                    for key, value in [("content-type", _CONTENT_TYPES[path.suffix]), *headers]
                ),
                "  typed_per_filter_config:",
                "    envoy.filters.http.grpc_json_transcoder:",
                '      "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig',
                "      disabled: true",
            ]
    pad = " " * indent
    return "\n".join(pad + line for chunk in lines for line in chunk.split("\n"))


def _cors_policy(origins: tuple[str, ...], indent: int) -> str:
    """The virtual host's CORS policy (only with allowed origins)."""
    if not origins:
        return ""
    lines = [
        "typed_per_filter_config:",
        "  envoy.filters.http.cors:",
        '    "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy',
        "    allow_origin_string_match:",
        *(f"    - exact: {_q(origin)}" for origin in origins),
        '    allow_methods: "GET, PUT, POST, DELETE, OPTIONS"',
        '    allow_headers: "authorization, content-type"',
        '    expose_headers: "retry-after, allow"',
        '    max_age: "600"',
        "    allow_credentials: false",
    ]
    pad = " " * indent
    return "\n".join(pad + line for line in lines)


def _cors_routes(origins: tuple[str, ...], indent: int) -> str:
    """A preflight from an allowed origin needs a route with a route entry: the
    CORS filter ignores direct responses (the 405 routes), and answers this one
    itself before the router. Preflights from other origins do not match and
    get what they would without CORS: no Access-Control-* header at all."""
    if not origins:
        return ""
    regex = "^(" + "|".join(re.escape(o) for o in origins) + ")$"
    lines = [
        "- match:",
        "    prefix: /",
        "    headers:",
        '    - name: ":method"',
        "      string_match: {exact: OPTIONS}",
        "    - name: origin",
        f"      string_match: {{safe_regex: {{regex: {_q(regex)}}}}}",
        "    - name: access-control-request-method",
        "      present_match: true",
        "  route: {cluster: webhooks_api, timeout: 5s}",
        "  typed_per_filter_config:",
        "    envoy.filters.http.grpc_json_transcoder:",
        '      "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig',
        "      disabled: true",
    ]
    pad = " " * indent
    return "\n".join(pad + line for line in lines)


def _cors_request_routes(origins: tuple[str, ...], indent: int) -> str:
    """The CORS filter decides on the route of the *original* REST path (before
    the transcoder rewrites it), and only for routes with a route entry: this
    one catches REST requests from allowed origins for it; the transcoder
    then rewrites the path and the request goes on to the WebhookAdmin route."""
    if not origins:
        return ""
    regex = "^(" + "|".join(re.escape(o) for o in origins) + ")$"
    lines = [
        "- match:",
        "    prefix: /webhooks/",
        "    headers:",
        "    - name: origin",
        f"      string_match: {{safe_regex: {{regex: {_q(regex)}}}}}",
        "  route: {cluster: webhooks_api, timeout: 30s}",
    ]
    pad = " " * indent
    return "\n".join(pad + line for line in lines)


def _cors_filter(origins: tuple[str, ...], indent: int) -> str:
    if not origins:
        return ""
    lines = [
        "# With CORS, every answer depends on the request's Origin: say so to caches",
        "# (before the CORS filter, so its preflight answers get it too).",
        "- name: webhooks.vary_origin",
        "  typed_config:",
        '    "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.'
        "HeaderMutation",
        "    mutations:",
        "      response_mutations:",
        "      - append:",
        "          header: {key: vary, value: Origin}",
        "          append_action: APPEND_IF_EXISTS_OR_ADD",
        "# Preflights from the allowed origins are answered here; other origins get",
        "# no Access-Control-* header at all.",
        "- name: envoy.filters.http.cors",
        "  typed_config:",
        '    "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors',
    ]
    pad = " " * indent
    return "\n".join(pad + line for line in lines)


def _gateway_secret_header(secret: str, indent: int) -> str:
    """Tells serve the call came through this gateway (never the client's value)."""
    if secret:
        lines = [
            "- header: {key: x-webhooks-gateway-secret, value: " + _q(secret) + "}",
            "  append_action: OVERWRITE_IF_EXISTS_OR_ADD",
        ]
    else:
        lines = []
    pad = " " * indent
    return "\n".join(pad + line for line in lines)


def render(config: GatewayConfig) -> str:
    """The Envoy bootstrap YAML for ``config``."""
    template = Template(config.files.template.read_text())
    values = {
        "listen_host": config.listen.host,
        "listen_port": str(config.listen.port),
        "admin_address": (
            f"{{pipe: {{path: {_q(config.admin_socket)}, mode: 384}}}}"  # 0600
            if config.admin_socket
            else f"{{socket_address: {{address: 127.0.0.1, port_value: {config.admin_port}}}}}"
        ),
        "descriptor_path": str(config.files.descriptor.resolve()),
        "openapi_path": str(config.files.openapi.resolve()),
        "max_request_bytes": str(config.max_request_bytes),
        "max_response_bytes": str(config.max_response_bytes),
        **_edge_values(config),
        "health_check_interval": f"{config.health_check_interval_s:g}s",
        "cluster_type": "STATIC" if all(u.is_ip for u in config.upstreams) else "STRICT_DNS",
        "local_reply_mappers": _local_reply_mappers(12),
        "lb_endpoints": _lb_endpoints(config.upstreams, 8),
        "method_not_allowed_routes": _method_not_allowed_routes(config.files.openapi, 14),
        "grpc_listener": _grpc_listener(config, 2),
        "request_check_lua": _block(_request_check_lua(config), 18),
        "openapi_servers_lua": _block(_openapi_servers_lua(), 24),
        "grpc_elsewhere": _q(_grpc_elsewhere(config)),
        "dashboard_routes": _dashboard_routes(config, 14),
        "cors_policy": _cors_policy(config.cors_allowed_origins, 14),
        "cors_filter": _cors_filter(config.cors_allowed_origins, 10),
        "cors_routes": _cors_routes(config.cors_allowed_origins, 14),
        "cors_request_routes": _cors_request_routes(config.cors_allowed_origins, 14),
        "gateway_secret_header": _gateway_secret_header(config.gateway_secret, 12),
        **config.extra,
    }
    try:
        return template.substitute(values)
    except (KeyError, ValueError) as exc:
        raise ConfigurationError(f"{config.files.template}: bad placeholder {exc}") from exc
