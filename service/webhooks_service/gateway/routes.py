"""The REST listener's routes, first match wins:

1. CORS preflights from the allowed origins (answered by the CORS filter);
2. the dashboard (``gateway/dashboard/``): ``/`` and ``/dashboard`` redirect to
   ``/dashboard/``, each file answered from disk;
3. ``GET /webhooks/openapi.json``, its ``servers`` naming the address it is
   served from;
4. a REST path with a method it lacks: 405 with ``allow``;
5. a REST call the transcoder turned into a WebhookAdmin RPC: the API;
6. native gRPC on the REST port: UNIMPLEMENTED naming where gRPC is served;
7. REST calls from allowed origins (so that the CORS filter sees a route);
8. anything else: a JSON 404.
"""

from __future__ import annotations

import json
import re
from typing import Any

from webhooks_service.errors import ConfigurationError
from webhooks_service.gateway.replies import METADATA_NAMESPACE
from webhooks_service.gateway.request_checks import OPENAPI_PATH, REQUEST_CHECK_FILTER
from webhooks_service.gateway.settings import GatewayConfig

__all__ = [
    "DASHBOARD_PREFIX",
    "DIRECT_RESPONSE_LIMIT",
    "OPENAPI_DEFAULT_SERVER",
    "OPENAPI_PATH",
    "cors_policy",
    "dashboard_csp",
    "rest_routes",
]

API_CLUSTER = "webhooks_api"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
DASHBOARD_PREFIX = "/dashboard/"
DIRECT_RESPONSE_LIMIT = 1048576  # the route config's max_direct_response_body_size_bytes

# The servers[0].url the generator writes (scripts/protoc_gen_openapi.py); the
# served copy replaces it with the gateway's own address.
OPENAPI_DEFAULT_SERVER = '"http://127.0.0.1:8080"'

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
_ROUTE_FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"


def retry_unsent() -> dict[str, Any]:
    """The retry policy of every route to the API (both listeners): the request
    never reached a server, so it is safe to retry any method."""
    return {
        "retry_on": "connect-failure,refused-stream,reset-before-request",
        "num_retries": 2,
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3."
                    "PreviousHostsPredicate"
                },
            }
        ],
        "host_selection_retry_max_attempts": 3,
    }


def _disabled(*filters: str) -> dict[str, Any]:
    """typed_per_filter_config turning ``filters`` off on one route."""
    return {name: {"@type": _ROUTE_FILTER_CONFIG, "disabled": True} for name in filters}


def _method(regex: str) -> dict[str, Any]:
    return {"name": ":method", "string_match": {"safe_regex": {"regex": regex}}}


def _header(key: str, value: str) -> dict[str, Any]:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def _origins_regex(origins: tuple[str, ...]) -> str:
    return "^(" + "|".join(re.escape(o) for o in origins) + ")$"


# --- 1. and 7. CORS -----------------------------------------------------------


def cors_policy(origins: tuple[str, ...]) -> dict[str, Any]:
    """The virtual host's typed_per_filter_config for CORS ({} without allowed origins)."""
    if not origins:
        return {}
    return {
        "envoy.filters.http.cors": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
            "allow_origin_string_match": [{"exact": origin} for origin in origins],
            "allow_methods": "GET, PUT, POST, DELETE, OPTIONS",
            "allow_headers": "authorization, content-type",
            "expose_headers": "retry-after, allow",
            "max_age": "600",
            "allow_credentials": False,
        }
    }


def _cors_preflight_routes(origins: tuple[str, ...]) -> list[dict[str, Any]]:
    """A preflight from an allowed origin needs a route with a route entry: the
    CORS filter ignores direct responses (the 405 routes), and answers this one
    itself before the router. Preflights from other origins do not match and
    get what they would without CORS: no Access-Control-* header at all."""
    if not origins:
        return []
    return [
        {
            "match": {
                "prefix": "/",
                "headers": [
                    {"name": ":method", "string_match": {"exact": "OPTIONS"}},
                    {
                        "name": "origin",
                        "string_match": {"safe_regex": {"regex": _origins_regex(origins)}},
                    },
                    {"name": "access-control-request-method", "present_match": True},
                ],
            },
            "route": {"cluster": API_CLUSTER, "timeout": "5s"},
            "typed_per_filter_config": _disabled(TRANSCODER),
        }
    ]


def _cors_request_routes(origins: tuple[str, ...]) -> list[dict[str, Any]]:
    """The CORS filter decides on the route of the *original* REST path (before
    the transcoder rewrites it), and only for routes with a route entry: this
    one catches REST requests from allowed origins for it; the transcoder
    then rewrites the path and the request goes on to the WebhookAdmin route."""
    if not origins:
        return []
    return [
        {
            "match": {
                "prefix": "/webhooks/",
                "headers": [
                    {
                        "name": "origin",
                        "string_match": {"safe_regex": {"regex": _origins_regex(origins)}},
                    }
                ],
            },
            "route": {"cluster": API_CLUSTER, "timeout": "30s"},
        }
    ]


# --- 2. the dashboard ---------------------------------------------------------


def dashboard_csp(origins: tuple[str, ...]) -> str:
    """The dashboard's Content-Security-Policy: its own files only; framed only
    by itself and the CORS origins (the host platform that embeds it)."""
    ancestors = " ".join(("'self'", *origins))
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    )


def _dashboard_routes(config: GatewayConfig) -> list[dict[str, Any]]:
    """GET/HEAD routes for every file of gateway/dashboard/ (``index.html`` also at
    ``/dashboard/``), and redirects from ``/`` and ``/dashboard`` to it."""
    folder = config.files.dashboard
    if folder is None:
        return []
    get = _method("^(GET|HEAD)$")
    routes: list[dict[str, Any]] = [
        {
            "match": {"path": target, "headers": [get]},
            "redirect": {"path_redirect": DASHBOARD_PREFIX, "response_code": "FOUND"},
            "typed_per_filter_config": _disabled(TRANSCODER),
        }
        for target in ("/", "/dashboard")
    ]
    headers = [
        ("cache-control", "no-cache"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("content-security-policy", dashboard_csp(config.cors_allowed_origins)),
    ]
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _CONTENT_TYPES)
    for path in files:
        if path.stat().st_size > DIRECT_RESPONSE_LIMIT:
            raise ConfigurationError(
                f"{path}: larger than the gateway's direct-response limit ({DIRECT_RESPONSE_LIMIT})"
            )
        paths = [DASHBOARD_PREFIX + path.name]
        if path.name == "index.html":
            paths.insert(0, DASHBOARD_PREFIX)
        answer = [_header("content-type", _CONTENT_TYPES[path.suffix])]
        answer += [_header(key, value) for key, value in headers]
        routes += [
            {
                "match": {"path": route, "headers": [get]},
                "direct_response": {"status": 200, "body": {"filename": str(path.resolve())}},
                "response_headers_to_add": answer,
                "typed_per_filter_config": _disabled(TRANSCODER),
            }
            for route in paths
        ]
    return routes


# --- 3. the OpenAPI description -------------------------------------------------


def _openapi_servers_lua() -> str:
    """The served description names the gateway's own address (the listener's
    local address of this connection: plain HTTP), not the generator's
    default, and never the request's Host (issue 27.4)."""
    return f"""\
function envoy_on_request(handle)
  local here = handle:streamInfo():downstreamLocalAddress() or ""
  handle:streamInfo():dynamicMetadata():set({json.dumps(METADATA_NAMESPACE)}, "server",
    "http://" .. here)
end
function envoy_on_response(handle)
  local meta = handle:streamInfo():dynamicMetadata():get({json.dumps(METADATA_NAMESPACE)})
  local server = meta and meta["server"]
  if not server or not server:match("^https?://[%w%.%-%[%]:]+$") then return end
  handle:headers():remove("content-length")
  local body = handle:body()
  local text = body:getBytes(0, body:length())
  local from, to = text:find({json.dumps(OPENAPI_DEFAULT_SERVER)}, 1, true)
  if from then
    local quoted = '"' .. server .. '"'
    body:setBytes(text:sub(1, from - 1) .. quoted .. text:sub(to + 1))
  end
end
"""


def _openapi_route(config: GatewayConfig) -> dict[str, Any]:
    return {
        "match": {
            "path": OPENAPI_PATH,
            "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
        },
        "direct_response": {
            "status": 200,
            "body": {"filename": str(config.files.openapi.resolve())},
        },
        "response_headers_to_add": [_header("content-type", "application/json")],
        "typed_per_filter_config": {
            **_disabled(TRANSCODER),
            # The request check's slot, reused: this route's Lua names the gateway's address.
            REQUEST_CHECK_FILTER: {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute",
                "source_code": {"inline_string": _openapi_servers_lua()},
            },
        },
    }


# --- 4. methods a REST path lacks ---------------------------------------------


def _path_match(path: str) -> dict[str, Any]:
    """The route's path matcher: exact, or a regex for a templated path
    (``/webhooks/configs/{config_id}:replay``: one segment per variable, without
    ``:`` so that ``/webhooks/configs/{config_id}`` does not also match the custom methods)."""
    if "{" not in path:
        return {"path": path}
    parts = re.split(r"\{[^}]*\}", path)
    return {"safe_regex": {"regex": "[^/:]+".join(re.escape(part) for part in parts)}}


def _method_not_allowed_routes(openapi: dict[str, Any]) -> list[dict[str, Any]]:
    """For each REST path, a route answering 405 (with ``allow``) to other methods.

    The transcoder is disabled on these routes; otherwise it would answer 404
    (unknown method) before the router sees the request.
    """
    routes: list[dict[str, Any]] = []
    paths: dict[str, dict[str, Any]] = openapi["paths"]
    for path, operations in sorted(paths.items()):
        methods = sorted(m.upper() for m in operations)
        allow = ", ".join(methods)
        method = _method("^(" + "|".join(methods) + ")$")
        routes.append(
            {
                "match": {**_path_match(path), "headers": [{**method, "invert_match": True}]},
                "direct_response": {
                    "status": 405,
                    "body": {"inline_string": f"method not allowed here; use {allow}"},
                },
                "response_headers_to_add": [{"header": {"key": "allow", "value": allow}}],
                "typed_per_filter_config": _disabled(TRANSCODER),
            }
        )
    return routes


# --- 5. and 6. the API, and gRPC sent to the wrong port ---------------------------


def _api_route() -> dict[str, Any]:
    """Only transcoded requests carry x-envoy-original-method, so native gRPC
    (e.g. to EventPublisher) falls through to the routes after it."""
    return {
        "match": {
            "prefix": "/webhooks.v1.WebhookAdmin/",
            "headers": [{"name": "x-envoy-original-method", "present_match": True}],
        },
        "route": {"cluster": API_CLUSTER, "timeout": "30s", "retry_policy": retry_unsent()},
    }


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


def _native_grpc_route(config: GatewayConfig) -> dict[str, Any]:
    """A gRPC client that dialled the REST port gets UNIMPLEMENTED (Envoy maps
    404 to grpc-status 12) with a message naming where gRPC is served, instead
    of a bare 404 that gRPC clients read as "UNKNOWN: No status received"."""
    return {
        "match": {
            "prefix": "/",
            "headers": [{"name": "content-type", "string_match": {"prefix": "application/grpc"}}],
        },
        "direct_response": {"status": 404, "body": {"inline_string": _grpc_elsewhere(config)}},
        "typed_per_filter_config": _disabled(
            "envoy.filters.http.header_mutation", REQUEST_CHECK_FILTER, TRANSCODER
        ),
    }


def rest_routes(config: GatewayConfig, openapi: dict[str, Any]) -> list[dict[str, Any]]:
    """The REST virtual host's routes, in the order of this module's docstring."""
    origins = config.cors_allowed_origins
    return [
        *_cors_preflight_routes(origins),
        *_dashboard_routes(config),
        _openapi_route(config),
        *_method_not_allowed_routes(openapi),
        _api_route(),
        _native_grpc_route(config),
        *_cors_request_routes(origins),
        {
            "match": {"prefix": "/"},
            "direct_response": {
                "status": 404,
                "body": {"inline_string": "no REST endpoint at this path and method"},
            },
        },
    ]
