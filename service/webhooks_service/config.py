"""Operator settings: every one has a default, a WEBHOOKS_* environment
variable and a command-line option, declared once in ``SETTINGS``.

Precedence: command-line option > environment variable > default. The
configuration table in docs/settings.md lists the same entries (``webhooks
settings --markdown`` prints it, and tests/test_readme.py keeps it in step).
Each value is read by a parser of config_values.py.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from webhooks_service.config_values import (
    parse_dashboard_url,
    parse_duration,
    parse_event_loop,
    parse_log_format,
    parse_networks,
    parse_origins,
    parse_page_budget,
    parse_portal_ttl,
    parse_schedule,
)
from webhooks_service.errors import ConfigurationError

DEFAULT_RETRY_SCHEDULE = "5,30,120,600,1800,3600,7200,14400,28800,43200,86400"


@dataclass(frozen=True)
class Setting:
    name: str  # attribute of Settings, and --option-name
    default: str
    help: str
    parse: Callable[[str], Any] = str
    secret: bool = False

    @property
    def env(self) -> str:
        return "WEBHOOKS_" + self.name.upper()

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database_url",
        "sqlite:///.webhooks/webhooks.db",
        "SQLAlchemy URL: sqlite:///PATH (default) or postgresql+psycopg://USER@HOST/DB",
    ),
    Setting("grpc_listen", "127.0.0.1:50051", "address the gRPC API listens on"),
    Setting("gateway_listen", "127.0.0.1:8080", "address the REST gateway (Envoy) listens on"),
    Setting("log_level", "INFO", "log level: DEBUG, INFO, WARNING, ERROR"),
    Setting("max_configs_per_org", "100", "webhook configurations allowed per organisation", int),
    Setting("max_event_bytes", "262144", "largest serialised event `data` accepted, in bytes", int),
    Setting(
        "retry_schedule",
        DEFAULT_RETRY_SCHEDULE,
        "delays in seconds before each retry, comma-separated (fractions allowed)",
        parse_schedule,
    ),
    Setting(
        "allowed_target_networks",
        "",
        "CIDR list of otherwise-refused networks deliveries may reach, "
        "e.g. 127.0.0.0/8,::1/128 for development",
        parse_networks,
    ),
    Setting("connect_timeout", "5", "seconds to establish a connection to an endpoint", float),
    Setting("attempt_timeout", "15", "seconds one delivery attempt may take in all", float),
    Setting("response_body_cap", "16384", "bytes of an endpoint's response kept in the log", int),
    Setting("max_in_flight", "256", "delivery attempts in flight per worker process", int),
    Setting(
        "max_in_flight_per_endpoint",
        "16",
        "delivery attempts in flight per destination (scheme, host and port, shared by an "
        "organisation's configurations) per worker process; the most the adaptive limit reaches",
        int,
    ),
    Setting("claim_batch_size", "500", "deliveries claimed per query", int),
    Setting(
        "lease_seconds",
        "60",
        "how long a claimed delivery stays with its worker before others may take it",
        float,
    ),
    Setting("poll_interval", "1.0", "seconds between queue polls when no wake-up arrives", float),
    Setting("shutdown_grace", "10", "seconds in-flight attempts get to finish on SIGTERM", float),
    Setting(
        "secret_key",
        "",
        "key(s) that encrypt webhook secrets at rest, comma-separated, first encrypts "
        "(optional; each at least 32 random characters)",
        str,
        True,
    ),
    Setting(
        "secret_rotation_grace_seconds",
        "86400",
        "seconds a replaced webhook secret keeps signing alongside the new one (0: none)",
        float,
    ),
    Setting(
        "rate_limit_per_second",
        "50",
        "admin API calls per second per API key, sustained (0 disables rate limiting)",
        float,
    ),
    Setting("rate_limit_burst", "100", "admin API calls per API key allowed in a burst", int),
    Setting(
        "auth_failure_per_second",
        "1",
        "failed authentications per second allowed per client address, sustained, before "
        "its calls are answered RESOURCE_EXHAUSTED / 429 (0 disables)",
        float,
    ),
    Setting(
        "auth_failure_burst",
        "20",
        "failed authentications per client address allowed in a burst",
        int,
    ),
    Setting(
        "trusted_proxies",
        "127.0.0.0/8,::1/128",
        "CIDR list of the addresses the gateway connects from; a call from one of them "
        "carrying the gateway secret names its client in x-webhooks-client-address "
        "(for per-address limits); empty trusts none",
        parse_networks,
    ),
    Setting(
        "gateway_secret",
        "",
        "shared secret the gateway (Envoy) sends to serve in x-webhooks-gateway-secret, "
        "so that only calls through it may name their client's address; set the same on "
        "`gateway` and `serve` (`run` makes one when empty; empty: no call may)",
        str,
        True,
    ),
    Setting(
        "publish_rate_limit_per_second",
        "0",
        "PublishEvent(s) calls per second per API key (0: not limited)",
        float,
    ),
    Setting(
        "retention_days",
        "30",
        "days events and their delivery log are kept once every delivery has finished "
        "(0 keeps them forever)",
        int,
    ),
    Setting("prune_batch_size", "1000", "events deleted per pruning transaction", int),
    Setting("prune_pause", "0.05", "seconds pruning pauses between batches", float),
    Setting(
        "log_format",
        "auto",
        "log lines as json (one object per line), text, or auto (text on a terminal, else json)",
        parse_log_format,
    ),
    Setting(
        "event_loop",
        "auto",
        "event loop of serve, worker and run: uvloop (the optional webhooks-service[uvloop] "
        "extra), asyncio, or auto (uvloop when installed, else asyncio)",
        parse_event_loop,
    ),
    Setting(
        "metrics_listen",
        "127.0.0.1:9464",
        "address of the Prometheus metrics endpoint (GET /metrics); empty disables it",
    ),
    Setting(
        "log_page_max_bytes",
        "4194304",
        "byte budget of one ListDeliveryLogs page: a page stops early (with a "
        "next_page_token) once its entries reach it; at least one entry",
        parse_page_budget,
    ),
    Setting(
        "endpoint_failure_disable_after",
        "5d",
        "disable an endpoint whose every attempt has failed for this long "
        "(e.g. 5d, 12h; 0 never disables)",
        parse_duration,
    ),
    Setting(
        "operational_window",
        "60s",
        "window of operational webhooks: at most one webhook.delivery_failed per endpoint "
        "(the others counted into the next), and per organisation at most as many "
        "operational deliveries as it has endpoints (e.g. 60s, 5m; at least 1s)",
        parse_duration,
    ),
    Setting(
        "replay_deliveries_per_hour",
        "10000",
        "deliveries one organisation may replay per hour, across all API processes (0: unlimited)",
        float,
    ),
    Setting(
        "test_events_per_minute",
        "60",
        "test events one organisation may send per minute, half of them at once, "
        "across all API processes (0: unlimited)",
        float,
    ),
    # --- signing keys (issue 23) ---
    Setting(
        "jwks_cache_seconds",
        "60",
        "seconds an organisation's published key set (jwks.json) is cached, per API process, "
        "and its Cache-Control max-age",
        float,
    ),
    Setting(
        "jwks_reads_per_second",
        "20",
        "key-set database reads (cache misses) per second per API process, in bursts of "
        "twice that; past it the path answers 429 (0: unlimited)",
        float,
    ),
    # --- the dashboard (portal sessions, CORS) ---
    Setting(
        "portal_session_ttl",
        "1h",
        "default lifetime of a dashboard portal session (e.g. 1h, 30m; 1m to 24h)",
        parse_portal_ttl,
    ),
    Setting(
        "dashboard_url",
        "",
        "public URL of the dashboard for portal-session links, e.g. "
        "https://hooks.example.com/dashboard/ (default: http://<gateway_listen>/dashboard/; "
        "never a request's Host)",
        parse_dashboard_url,
    ),
    Setting(
        "cors_allowed_origins",
        "",
        "origins whose pages may call the REST API and embed the dashboard, comma-separated, "
        "e.g. https://app.example.com (default: none)",
        parse_origins,
    ),
)


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///.webhooks/webhooks.db"
    grpc_listen: str = "127.0.0.1:50051"
    gateway_listen: str = "127.0.0.1:8080"
    log_level: str = "INFO"
    max_configs_per_org: int = 100
    max_event_bytes: int = 262144
    retry_schedule: tuple[float, ...] = field(
        default_factory=lambda: parse_schedule(DEFAULT_RETRY_SCHEDULE)
    )
    allowed_target_networks: tuple[str, ...] = ()
    connect_timeout: float = 5.0
    attempt_timeout: float = 15.0
    response_body_cap: int = 16384
    max_in_flight: int = 256
    max_in_flight_per_endpoint: int = 16
    claim_batch_size: int = 500
    lease_seconds: float = 60.0
    poll_interval: float = 1.0
    shutdown_grace: float = 10.0
    secret_key: str = ""
    secret_rotation_grace_seconds: float = 86400.0
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 100
    auth_failure_per_second: float = 1.0
    auth_failure_burst: int = 20
    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    gateway_secret: str = ""
    publish_rate_limit_per_second: float = 0.0
    retention_days: int = 30
    prune_batch_size: int = 1000
    prune_pause: float = 0.05
    log_format: str = "auto"
    event_loop: str = "auto"
    metrics_listen: str = "127.0.0.1:9464"
    log_page_max_bytes: int = 4194304
    endpoint_failure_disable_after: float = 432000.0
    operational_window: float = 60.0
    replay_deliveries_per_hour: float = 10000.0
    test_events_per_minute: float = 60.0
    jwks_cache_seconds: float = 60.0
    jwks_reads_per_second: float = 20.0
    portal_session_ttl: float = 3600.0
    dashboard_url: str = ""
    cors_allowed_origins: tuple[str, ...] = ()

    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, str | None] | None = None
    ) -> Settings:
        """Settings from defaults, then ``env`` (default: os.environ), then ``overrides``."""
        env = os.environ if env is None else env
        overrides = overrides or {}
        values: dict[str, Any] = {}
        for s in SETTINGS:
            raw = overrides.get(s.name)
            if raw is None:
                raw = env.get(s.env, s.default)
            try:
                values[s.name] = s.parse(raw)
            except ConfigurationError:
                raise
            except ValueError as exc:
                raise ConfigurationError(f"{s.env}={raw!r}: {exc}") from exc
        return cls(**values)


def add_arguments(parser: argparse.ArgumentParser, names: list[str]) -> None:
    """Add the options of the named settings to a command's parser."""
    by_name = {s.name: s for s in SETTINGS}
    for name in names:
        s = by_name[name]
        shown = "(hidden)" if s.secret else repr(s.default)
        parser.add_argument(
            s.option,
            dest=s.name,
            default=None,
            metavar=s.name.upper(),
            help=f"{s.help} [env {s.env}; default {shown}]",
        )


def from_args(args: argparse.Namespace) -> Settings:
    overrides = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    return Settings.load(overrides=overrides)
