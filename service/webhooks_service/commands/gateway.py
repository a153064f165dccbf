"""``webhooks gateway``: the REST gateway (Envoy + gRPC-JSON transcoder).

    webhooks gateway --listen 127.0.0.1:8080 --upstream 127.0.0.1:50051 [--upstream …]

Several ``--upstream`` addresses are load-balanced round robin, each watched
with gRPC health checks. The command reports the addresses once Envoy answers
``/ready`` and runs until Ctrl-C / SIGTERM, which stops Envoy.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from webhooks_service import config
from webhooks_service.gateway.config import (
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    GatewayConfig,
    GatewayFiles,
    find_gateway_dir,
    parse_address,
)
from webhooks_service.gateway.process import EnvoyProcess

DESCRIPTION = """\
Run the REST gateway: Envoy with the gRPC-JSON transcoder, in front of one or
more `webhooks serve` processes.

    webhooks gateway --listen 127.0.0.1:8080 --upstream 127.0.0.1:50051 [--upstream ...]

Several --upstream addresses are balanced round robin, each watched with gRPC
health checks. The gateway reports itself up once Envoy listens and at least
one upstream answers its health check (until then it says which it is waiting
for), and runs until Ctrl-C / SIGTERM, which drains and stops Envoy."""


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "gateway",
        help="run the REST gateway (Envoy) in front of one or more `webhooks serve` processes",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_gateway_arguments(parser, listen_option="--listen")
    parser.add_argument(
        "--upstream",
        action="append",
        metavar="HOST:PORT",
        help="gRPC address of a `webhooks serve` process; repeat for several "
        "[default: WEBHOOKS_GRPC_LISTEN or 127.0.0.1:50051]",
    )
    parser.add_argument(
        "--grpc-proxy-listen",
        metavar="HOST:PORT",
        default=None,
        help="also listen for native gRPC here (WebhookAdmin and EventPublisher, for "
        "internal services), balanced over the same upstreams [default: off]",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=5.0,
        help="on SIGTERM/Ctrl-C, stop taking new connections and give requests in flight "
        "this long to finish [default 5]",
    )
    config.add_arguments(parser, ["log_level", "cors_allowed_origins"])
    parser.set_defaults(handler=_run)


def add_gateway_arguments(parser: argparse.ArgumentParser, *, listen_option: str | None) -> None:
    """Options shared by ``gateway`` and ``run`` (``run`` has ``--gateway-listen`` already)."""
    if listen_option is not None:
        parser.add_argument(
            listen_option,
            dest="gateway_listen",
            metavar="HOST:PORT",
            default=None,
            help="address of the REST listener "
            "[env WEBHOOKS_GATEWAY_LISTEN; default 127.0.0.1:8080]",
        )
    parser.add_argument(
        "--admin-port",
        type=int,
        default=0,
        help="Envoy admin port on 127.0.0.1 (/ready, /stats); 0: a unix socket in the "
        "gateway's private temporary folder instead [default 0]",
    )
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help=f"largest REST request body; larger is 413 [default {DEFAULT_MAX_REQUEST_BYTES}]",
    )
    parser.add_argument(
        "--max-response-bytes",
        type=int,
        default=DEFAULT_MAX_RESPONSE_BYTES,
        help="largest API response the gateway turns into JSON; keep it at least twice "
        f"WEBHOOKS_LOG_PAGE_MAX_BYTES [default {DEFAULT_MAX_RESPONSE_BYTES}]",
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="Envoy worker threads [default: CPU count]"
    )
    parser.add_argument(
        "--gateway-dir",
        default=None,
        help="folder with openapi.json, descriptor.pb and request_check.lua "
        "[default: the repository's gateway/]",
    )


def build_config(
    args: argparse.Namespace, upstreams: list[str], *, gateway_secret: str | None = None
) -> GatewayConfig:
    """``gateway_secret``: what the gateway tells serve (default: the setting)."""
    settings = config.from_args(args)
    grpc_proxy = getattr(args, "grpc_proxy_listen", None)
    return GatewayConfig(
        grpc_proxy_listen=(
            parse_address(grpc_proxy, what="--grpc-proxy-listen", allow_zero_port=True)
            if grpc_proxy
            else None
        ),
        listen=parse_address(settings.gateway_listen, what="--listen", allow_zero_port=True),
        upstreams=tuple(parse_address(u, what="--upstream") for u in upstreams),
        files=GatewayFiles.in_dir(find_gateway_dir(args.gateway_dir)),
        admin_port=args.admin_port,
        max_request_bytes=args.max_request_bytes,
        max_response_bytes=args.max_response_bytes,
        cors_allowed_origins=settings.cors_allowed_origins,
        gateway_secret=settings.gateway_secret if gateway_secret is None else gateway_secret,
    )


def envoy_log_level(python_level: str) -> str:
    return {"DEBUG": "info", "INFO": "warning"}.get(python_level.upper(), "error")


class Stop:
    """Turns SIGTERM and SIGINT into an event the supervising loop waits on;
    the previous handlers come back on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Stop:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


def _run(args: argparse.Namespace) -> int:
    settings = config.from_args(args)
    upstreams = args.upstream or [settings.grpc_listen]
    gw_config = build_config(args, upstreams)
    envoy = EnvoyProcess(
        gw_config,
        log_level=envoy_log_level(settings.log_level),
        concurrency=args.concurrency,
        echo_logs=True,
    )
    with envoy.start(), Stop() as stop:
        grpc_note = f", gRPC on {envoy.grpc_listen}" if envoy.grpc_listen else ""
        if not envoy.healthy_upstreams():
            # Listening, but every request would be a 503: not "up" yet.
            print(
                f"gateway: listening on {envoy.base_url}, waiting for an API process: "
                f"none of {', '.join(upstreams)} answers its health check yet "
                "(REST calls get 503 UNAVAILABLE meanwhile)",
                file=sys.stderr,
                flush=True,
            )
            while not envoy.healthy_upstreams():
                if stop.event.wait(0.5):
                    envoy.stop(grace=args.drain_seconds)
                    return 0
                code = envoy.poll()
                if code is not None:
                    print(f"webhooks: error: Envoy exited with status {code}", file=sys.stderr)
                    return 1
        healthy = sorted(envoy.healthy_upstreams())
        print(
            f"gateway: REST on {envoy.base_url}{grpc_note} -> {', '.join(upstreams)} "
            f"({len(healthy)} of {len(upstreams)} healthy; Envoy pid {envoy.pid}, "
            f"admin {envoy.admin_url})",
            flush=True,
        )
        while not stop.event.wait(0.5):
            code = envoy.poll()
            if code is not None:
                print(f"webhooks: error: Envoy exited with status {code}", file=sys.stderr)
                return 1
        envoy.stop(grace=args.drain_seconds)
    return 0
