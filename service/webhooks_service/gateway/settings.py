"""What one gateway is given: its addresses, limits and the files Envoy reads.

The descriptor set (``gateway/descriptor.pb``, written by ``make gen``), the
OpenAPI description (``gateway/openapi.json``), the request check's Lua
(``gateway/request_check.lua``) and the dashboard (``gateway/dashboard/``) live
in the repository's ``gateway/`` folder, next to the protos they come from, not
inside this package: they are generated/edited with the contract, and Envoy
reads some of them from disk. :func:`find_gateway_dir` locates that folder: an
explicit ``--gateway-dir`` first, then the checkout this package is installed
from (editable install, as ``make`` does), then ``./gateway`` under the working
directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from webhooks_service.errors import ConfigurationError
from webhooks_service.hostport import Address

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "GatewayConfig",
    "GatewayFiles",
    "find_gateway_dir",
]

DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
# The transcoder's response buffer: twice the API's default log page budget
# (core/logs.py DEFAULT_MAX_PAGE_BYTES, 4 MiB), which leaves room for one
# entry past the budget and for the JSON being longer than the protobuf.
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024

# The file that tells a gateway folder (every other file is looked for in it).
_MARKER = "openapi.json"


@dataclass(frozen=True)
class GatewayFiles:
    """The files the gateway's configuration is built from."""

    descriptor: Path  # the descriptor set the transcoder reads (gateway/descriptor.pb)
    openapi: Path  # the REST paths and their schemas (gateway/openapi.json)
    request_check: Path  # the Lua request check (gateway/request_check.lua)
    dashboard: Path | None = None  # the dashboard's folder (gateway/dashboard/), if any

    @classmethod
    def in_dir(cls, directory: Path) -> GatewayFiles:
        files = cls(
            directory / "descriptor.pb",
            directory / _MARKER,
            directory / "request_check.lua",
            directory / "dashboard" if (directory / "dashboard").is_dir() else None,
        )
        missing = [
            p.name
            for p in (files.descriptor, files.openapi, files.request_check)
            if not p.is_file()
        ]
        if missing:
            raise ConfigurationError(
                f"gateway folder {directory} lacks {', '.join(missing)} (run `make gen`)"
            )
        return files


def find_gateway_dir(explicit: str | Path | None = None) -> Path:
    """The ``gateway/`` folder holding the generated files and the request check."""
    if explicit:
        path = Path(explicit).resolve()
        if not (path / _MARKER).is_file():
            raise ConfigurationError(f"--gateway-dir {path}: no {_MARKER} there")
        return path
    # service/webhooks_service/gateway/settings.py -> the checkout's root
    checkout = Path(__file__).resolve().parents[3] / "gateway"
    for candidate in (checkout, Path.cwd() / "gateway"):
        if (candidate / _MARKER).is_file():
            return candidate
    raise ConfigurationError(
        "cannot find the gateway/ folder (openapi.json, descriptor.pb); "
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

    def __post_init__(self) -> None:
        if not self.upstreams:
            raise ConfigurationError("give at least one --upstream HOST:PORT")
        if self.max_request_bytes < 1024:
            raise ConfigurationError("max request bytes must be at least 1024")
