"""``webhooks run``: the development stack in one command (what ``make run`` runs).

Runs ``webhooks serve`` (gRPC API + delivery worker, in this process) and the
REST gateway (Envoy, a child process) in front of it, prints both addresses,
a link that opens the dashboard signed in for the demo organisation, and a
ready-to-paste ``curl``, and stops both on Ctrl-C / SIGTERM.

First run: when the database has no organisation yet, it creates a demo
organisation and an API key with ``webhooks:read`` and ``webhooks:write``,
and prints the key once (only its hash is stored), so that the printed
``curl`` works straight away. Later runs print how to issue another key.
``--no-demo`` skips this.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from webhooks_service import config
from webhooks_service.commands import _event_loop
from webhooks_service.commands import gateway as gateway_command
from webhooks_service.commands._database import open_service_database
from webhooks_service.commands._preflight import check_service_addresses
from webhooks_service.commands.dashboard import mint_link
from webhooks_service.commands.serve import configure_logging, serve
from webhooks_service.config import Settings
from webhooks_service.core import keys, orgs
from webhooks_service.gateway.process import EnvoyProcess
from webhooks_service.observability import tracing
from webhooks_service.storage.db import shown_url

DESCRIPTION = """\
The development stack in one command (what `make run` runs): `webhooks serve`
(gRPC API + delivery worker, in this process) and the REST gateway (Envoy) in
front of it. Prints both addresses, the WEBHOOKS_DATABASE_URL to export in a
second terminal and a ready-to-paste curl; Ctrl-C / SIGTERM stops both.

On a database without any organisation it creates a demo organisation and an
API key (webhooks:read, webhooks:write) and prints the key once; later runs
print how to issue another. --no-demo skips this."""

DEMO_ORG_NAME = "Demo"
DEMO_SCOPES = (keys.SCOPE_WEBHOOKS_READ, keys.SCOPE_WEBHOOKS_WRITE)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="development stack: serve (API + worker) and the REST gateway together",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config.add_arguments(parser, [s.name for s in config.SETTINGS])
    gateway_command.add_gateway_arguments(parser, listen_option=None)
    parser.add_argument(
        "--no-demo",
        dest="demo",
        action="store_false",
        help="do not create a demo organisation and key on an empty database",
    )
    parser.set_defaults(handler=_run)


def bootstrap_demo(engine: Engine) -> tuple[str, str | None]:
    """(organisation id, new key or None). Creates both only if there is no organisation."""
    existing = orgs.list_orgs(engine)
    if existing:
        return existing[0].id, None
    org = orgs.create_org(engine, DEMO_ORG_NAME)
    _, raw = keys.create_key(engine, org.id, DEMO_SCOPES, name="demo key (webhooks run)")
    return org.id, raw


def _banner(
    settings: Settings,
    grpc_target: str,
    rest_url: str,
    org_id: str,
    key: str | None,
    dashboard: str | None = None,
) -> str:
    configs = f"{rest_url}/webhooks/configs"
    database = shown_url(settings.database_url)
    lines = [
        "",
        f"  gRPC API       {grpc_target}   (WebhookAdmin, EventPublisher, health, reflection)",
        f"  REST gateway   {rest_url}   (OpenAPI: {rest_url}/webhooks/openapi.json)",
        f"  database       {database}",
        "",
        "  In a second terminal, the `webhooks` commands (orgs, keys, ...) need this database:",
        "",
        f"    export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH",
        f"    export WEBHOOKS_DATABASE_URL={shlex.quote(database)}",
        "",
    ]

    if key is not None:
        lines += [
            f"  New database: created organisation {org_id} and this API key "
            "(webhooks:read, webhooks:write).",
            "  It is shown only now:",
            "",
            f"    export WEBHOOKS_KEY={key}",
            "",
        ]
    else:
        lines += [
            "  Issue an API key (printed once):",
            "",
            f"    export WEBHOOKS_KEY=$(webhooks keys create --org {org_id}"
            " --scope webhooks:read --scope webhooks:write)",
            "",
        ]
    lines += [
        "  Try it:",
        "",
        f'    curl -H "authorization: Bearer $WEBHOOKS_KEY" {configs}',
        f'    curl -X PUT -H "authorization: Bearer $WEBHOOKS_KEY" {configs} \\',
        """      -d '{"url": "https://example.com/hook", "event_types": ["reward.*"]}'""",
        "",
    ]
    if dashboard is not None:
        lines += [
            f"  The dashboard, signed in for {org_id} (this link works for "
            f"{settings.portal_session_ttl / 60:g} minutes;",
            f"  `.venv/bin/webhooks dashboard --org {org_id}` prints another):",
            "",
            f"    {dashboard}",
            "",
        ]
    lines += [
        "  Ctrl-C stops both.",
        "",
    ]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    settings = config.from_args(args)
    if not settings.gateway_secret:
        # Envoy and serve are both ours: a fresh secret tells serve a call came
        # through the gateway (api/throttle.py), so only those name their client.
        settings = dataclasses.replace(settings, gateway_secret=secrets.token_urlsafe(32))
    configure_logging(settings.log_level, settings.log_format)
    check_service_addresses(settings)
    event_loop = _event_loop.choose(settings.event_loop)  # fails before any migration
    tracing.configure_from_env()  # OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set
    settings, engine = open_service_database(settings, create=True)
    try:
        org_id, key = bootstrap_demo(engine) if args.demo else ("ORG_ID", None)
        return _event_loop.run(
            _supervise(args, settings, engine, org_id, key), event_loop, command="run"
        )
    finally:
        tracing.shutdown()
        engine.dispose()


async def _supervise(
    args: argparse.Namespace, settings: Settings, engine: Engine, org_id: str, key: str | None
) -> int:
    stop = asyncio.Event()
    envoy: EnvoyProcess | None = None
    watcher: asyncio.Task[None] | None = None
    failed: list[BaseException] = []

    async def watch_envoy(proc: EnvoyProcess) -> None:
        code = await asyncio.to_thread(proc.wait)
        print(f"webhooks: error: Envoy exited with status {code}", file=sys.stderr)
        failed.append(RuntimeError("gateway exited"))
        stop.set()

    async def start_gateway(grpc_target: str) -> None:
        nonlocal envoy, watcher
        gw_config = gateway_command.build_config(
            args, [grpc_target], gateway_secret=settings.gateway_secret
        )
        proc = EnvoyProcess(
            gw_config,
            log_level=gateway_command.envoy_log_level(settings.log_level),
            concurrency=args.concurrency,
            echo_logs=True,
        )
        try:
            # In a thread: Envoy's first health check must reach this loop's server.
            await asyncio.to_thread(proc.start)
        except BaseException as exc:
            failed.append(exc)
            stop.set()
            return
        envoy = proc
        watcher = asyncio.create_task(watch_envoy(proc))
        dashboard = None
        if args.demo:
            dashboard, _ = await asyncio.to_thread(
                mint_link, engine, settings, org_id, origin=proc.base_url
            )
        print(_banner(settings, grpc_target, proc.base_url, org_id, key, dashboard), flush=True)

    try:
        status = await serve(settings, engine, stop=stop, on_ready=start_gateway)
    finally:
        if watcher is not None:
            watcher.cancel()
        if envoy is not None:
            await asyncio.to_thread(envoy.stop)
    if failed:
        exc = failed[0]
        if isinstance(exc, Exception) and not isinstance(exc, RuntimeError):
            raise exc
        return 1
    return status
