"""The Envoy v3 bootstrap of the REST gateway, built as data and dumped once.

What it does:

* the admin interface on a unix socket (mode 0600) in the gateway's private
  folder, so no TCP client (a tenant's webhook endpoint included) can reach
  ``/quitquitquit`` or ``/stats``; on 127.0.0.1:``admin_port`` when one is given;
* the overload manager: a connection limit for the whole gateway (#13);
* the ``rest`` listener (HTTP/1.1 and HTTP/2), whose only job is REST: the
  request checks (request_checks.py), then
  ``envoy.filters.http.grpc_json_transcoder`` maps the REST paths onto
  ``webhooks.v1.WebhookAdmin`` (from the descriptor set ``make gen`` writes);
  its routes (routes.py) serve the dashboard and the OpenAPI description, and
  every error is the API's envelope (replies.py). EventPublisher is never
  reachable through it;
* optionally (``grpc_proxy_listen``) a ``grpc`` listener: native gRPC for every
  webhooks.v1 service, for internal services;
* the ``webhooks_api`` cluster: HTTP/2 to every upstream, round robin, with
  gRPC health checks.

Each part is a function returning a dict; :func:`render` dumps the whole as
JSON (which Envoy reads as it reads YAML), once.
"""

from __future__ import annotations

import json
from typing import Any

from webhooks_service.errors import ConfigurationError
from webhooks_service.gateway import request_checks
from webhooks_service.gateway.replies import local_reply_config
from webhooks_service.gateway.routes import (
    API_CLUSTER,
    DIRECT_RESPONSE_LIMIT,
    TRANSCODER,
    cors_policy,
    rest_routes,
    retry_unsent,
)
from webhooks_service.gateway.settings import GatewayConfig
from webhooks_service.hostport import Address

__all__ = ["bootstrap", "render"]

_HCM = "envoy.filters.network.http_connection_manager"
_HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
GATEWAY_SECRET_HEADER = "x-webhooks-gateway-secret"
CLIENT_ADDRESS_HEADER = "x-webhooks-client-address"
# Envoy's replies to REST clients carry no gRPC trailers or headers of their own.
_GRPC_RESPONSE_HEADERS = (
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "grpc-encoding",
    "grpc-accept-encoding",
)
_GRPC_RESPONSE_TRAILERS = ("grpc-status", "grpc-message", "grpc-status-details-bin")


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _socket_address(address: Address) -> dict[str, Any]:
    return {"socket_address": {"address": address.host, "port_value": address.port}}


def admin(config: GatewayConfig) -> dict[str, Any]:
    if config.admin_socket:
        return {"address": {"pipe": {"path": config.admin_socket, "mode": 0o600}}}
    return {
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": config.admin_port}}
    }


def overload_manager(config: GatewayConfig) -> dict[str, Any]:
    """Past ``max_connections``, new downstream connections are closed at once
    instead of queueing without bound (#13)."""
    return {
        "resource_monitors": [
            {
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                    "downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": config.max_connections,
                },
            }
        ]
    }


def _upstream_headers(config: GatewayConfig) -> dict[str, Any]:
    """The client's address for the API's per-address limits, whatever the client
    sent; believed only with the gateway's secret (issue 27: a client's own
    x-webhooks-gateway-secret is dropped, then ours is added)."""
    added = [
        {
            "header": {
                "key": CLIENT_ADDRESS_HEADER,
                "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
            },
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
    ]
    if config.gateway_secret:
        added.append(
            {
                "header": {"key": GATEWAY_SECRET_HEADER, "value": config.gateway_secret},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        )
    return {"request_headers_to_remove": [GATEWAY_SECRET_HEADER], "request_headers_to_add": added}


def _router() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            "suppress_envoy_headers": True,
        },
    }


def _listener(name: str, address: Address, manager: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "address": _socket_address(address),
        "enable_reuse_port": False,  # fail loudly when the port is taken
        "filter_chains": [
            {"filters": [{"name": _HCM, "typed_config": {"@type": _HCM_TYPE, **manager}}]}
        ],
    }


# --- the REST listener -----------------------------------------------------------


def _cors_filters(origins: tuple[str, ...]) -> list[dict[str, Any]]:
    """With CORS, every answer depends on the request's Origin: say so to caches
    (before the CORS filter, so its preflight answers get it too); preflights from
    the allowed origins are answered by the CORS filter."""
    if not origins:
        return []
    return [
        {
            "name": "webhooks.vary_origin",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3."
                "HeaderMutation",
                "mutations": {
                    "response_mutations": [
                        {
                            "append": {
                                "header": {"key": "vary", "value": "Origin"},
                                "append_action": "APPEND_IF_EXISTS_OR_ADD",
                            }
                        }
                    ]
                },
            },
        },
        {
            "name": "envoy.filters.http.cors",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
            },
        },
    ]


def _grpc_headers_removed() -> dict[str, Any]:
    """First in the chain, so last on the way out: after the transcoder has
    turned grpc-status & co. into the JSON body, drop them."""
    return {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3."
            "HeaderMutation",
            "mutations": {
                "response_mutations": [{"remove": h} for h in _GRPC_RESPONSE_HEADERS],
                "response_trailers_mutations": [{"remove": h} for h in _GRPC_RESPONSE_TRAILERS],
            },
        },
    }


def transcoder(config: GatewayConfig) -> dict[str, Any]:
    """REST onto WebhookAdmin. Its response buffer is sized to the API's log page
    byte budget plus JSON overhead, so a full default page never becomes a 500."""
    return {
        "name": TRANSCODER,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3."
            "GrpcJsonTranscoder",
            "proto_descriptor": str(config.files.descriptor.resolve()),
            "services": ["webhooks.v1.WebhookAdmin"],
            "auto_mapping": False,
            "convert_grpc_status": True,
            "max_response_body_size": config.max_response_bytes,
            "print_options": {
                "preserve_proto_field_names": True,
                "always_print_primitive_fields": True,
                "always_print_enums_as_ints": False,
                "add_whitespace": False,
            },
            "request_validation_options": dict(request_checks.TRANSCODER_VALIDATION),
        },
    }


def _rest_filters(config: GatewayConfig, openapi: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *_cors_filters(config.cors_allowed_origins),
        _grpc_headers_removed(),
        request_checks.body_size_filter(config.max_request_bytes),
        request_checks.header_names_filter(),
        request_checks.request_shape_filter(config, openapi),
        transcoder(config),
        _router(),
    ]


def rest_listener(config: GatewayConfig, openapi: dict[str, Any]) -> dict[str, Any]:
    virtual_host: dict[str, Any] = {"name": "rest", "domains": ["*"]}
    policy = cors_policy(config.cors_allowed_origins)
    if policy:
        virtual_host["typed_per_filter_config"] = policy
    virtual_host["routes"] = rest_routes(config, openapi)
    manager = {
        "stat_prefix": "rest",
        "codec_type": "AUTO",
        # x-forwarded-for carries the client's address to the API, and x-envoy-*
        # headers from non-internal clients are dropped, so they cannot pose as
        # transcoded requests.
        "use_remote_address": True,
        "server_header_transformation": "PASS_THROUGH",  # no "server: envoy" of our own
        # Edge limits (#13): slow-header connections are closed, idle
        # connections and streams too; larger headers are 431.
        "request_headers_timeout": _seconds(config.request_headers_timeout_s),
        "stream_idle_timeout": _seconds(config.idle_timeout_s),
        "max_request_headers_kb": config.max_request_headers_kb,
        "common_http_protocol_options": {
            "idle_timeout": _seconds(config.idle_timeout_s),
            "max_headers_count": request_checks.MAX_HEADERS_COUNT,
        },
        "route_config": {
            "name": "rest",
            **_upstream_headers(config),
            "max_direct_response_body_size_bytes": DIRECT_RESPONSE_LIMIT,
            "virtual_hosts": [virtual_host],
        },
        "http_filters": _rest_filters(config, openapi),
        "local_reply_config": local_reply_config(),
    }
    listener = _listener("rest", config.listen, manager)
    listener["per_connection_buffer_limit_bytes"] = 1048576
    return listener


# --- the gRPC listener ------------------------------------------------------------


def grpc_listener(config: GatewayConfig, address: Address) -> dict[str, Any]:
    """Native gRPC for every webhooks.v1 service, EventPublisher included, over the
    same upstreams; no transcoding, no header rewriting. The client's
    grpc-timeout is the deadline; without one, no limit."""
    manager = {
        "stat_prefix": "grpc",
        "codec_type": "HTTP2",
        "request_headers_timeout": _seconds(config.request_headers_timeout_s),
        "max_request_headers_kb": config.max_request_headers_kb,
        "route_config": {
            "name": "grpc",
            **_upstream_headers(config),
            "virtual_hosts": [
                {
                    "name": "grpc",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/webhooks.v1."},
                            "route": {
                                "cluster": API_CLUSTER,
                                "timeout": "0s",
                                "max_stream_duration": {"grpc_timeout_header_max": "0s"},
                                "retry_policy": retry_unsent(),
                            },
                        }
                    ],
                }
            ],
        },
        "http_filters": [_router()],
    }
    return _listener("grpc", address, manager)


# --- the upstream cluster -----------------------------------------------------------


def api_cluster(config: GatewayConfig) -> dict[str, Any]:
    interval = _seconds(config.health_check_interval_s)
    return {
        "name": API_CLUSTER,
        "type": "STATIC" if all(u.is_ip for u in config.upstreams) else "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                "HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "30s", "timeout": "5s"}
                    }
                },
            }
        },
        "health_checks": [
            {
                "timeout": "1s",
                "interval": interval,
                "no_traffic_interval": interval,
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "grpc_health_check": {},
            }
        ],
        "load_assignment": {
            "cluster_name": API_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": _socket_address(u)}} for u in config.upstreams
                    ]
                }
            ],
        },
    }


# --- the whole ------------------------------------------------------------------


def _openapi(config: GatewayConfig) -> dict[str, Any]:
    """The OpenAPI description: the REST paths of the 405 routes and the request check."""
    path = config.files.openapi
    try:
        openapi = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{path}: not an OpenAPI description ({exc})") from exc
    if not isinstance(openapi, dict) or not isinstance(openapi.get("paths"), dict):
        raise ConfigurationError(f"{path}: not an OpenAPI description (no paths)")
    return openapi


def bootstrap(config: GatewayConfig) -> dict[str, Any]:
    """The Envoy bootstrap for ``config``, as data."""
    openapi = _openapi(config)
    listeners = [rest_listener(config, openapi)]
    if config.grpc_proxy_listen is not None:
        listeners.append(grpc_listener(config, config.grpc_proxy_listen))
    return {
        "admin": admin(config),
        "overload_manager": overload_manager(config),
        "static_resources": {"listeners": listeners, "clusters": [api_cluster(config)]},
    }


def render(config: GatewayConfig) -> str:
    """The Envoy bootstrap for ``config``, as the JSON text Envoy reads.

    Compact: with ``indent`` json.dumps falls back to its pure-Python encoder
    (10 ms against 1.1 ms here); ``python -m json.tool`` reads it for a person.
    """
    return json.dumps(bootstrap(config))
