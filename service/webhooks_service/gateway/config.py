"""The gateway's configuration: what it is given (settings.py) and the Envoy
bootstrap built from it as data (bootstrap.py, with routes.py, replies.py and
the request checks in request_checks.py).

The names the commands and tests import stay here.
"""

from __future__ import annotations

from webhooks_service.gateway.bootstrap import bootstrap, render
from webhooks_service.gateway.replies import GRPC_CODE_FOR_HTTP_STATUS
from webhooks_service.gateway.request_checks import OPENAPI_PATH, request_check_rules
from webhooks_service.gateway.routes import (
    DASHBOARD_PREFIX,
    DIRECT_RESPONSE_LIMIT,
    OPENAPI_DEFAULT_SERVER,
    dashboard_csp,
)
from webhooks_service.gateway.settings import (
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    GatewayConfig,
    GatewayFiles,
    find_gateway_dir,
)
from webhooks_service.hostport import Address, parse_address

__all__ = [
    "DASHBOARD_PREFIX",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DIRECT_RESPONSE_LIMIT",
    "GRPC_CODE_FOR_HTTP_STATUS",
    "OPENAPI_DEFAULT_SERVER",
    "OPENAPI_PATH",
    "Address",
    "GatewayConfig",
    "GatewayFiles",
    "bootstrap",
    "dashboard_csp",
    "find_gateway_dir",
    "parse_address",
    "render",
    "request_check_rules",
]
