"""Benchmark: GET /webhooks/configs through Envoy vs ListWebhookConfigs over gRPC.

Usage: python scripts/bench_gateway.py [--duration 5] [--concurrency 32] [--rounds 3]
       (or `make bench-gateway`)

Starts one ``webhooks serve`` process on a fresh SQLite database with one
organisation and ``--configs`` webhook configurations, and one Envoy
(``webhooks_service.gateway``) in front of it. Then, in the same run, it
alternates rounds of

- REST: aiohttp, ``--concurrency`` concurrent GET /webhooks/configs through Envoy;
- gRPC: grpc.aio, the same number of concurrent ListWebhookConfigs calls
  straight to the server,

each for ``--duration`` seconds after a warm-up, and prints requests/second
per round, the medians, and REST/gRPC. Both clients run in this process on
one event loop; the server is a separate process, so the API server is the
shared bottleneck and the ratio shows what the gateway costs. Target: >= 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc

from webhooks.v1 import admin_pb2, admin_pb2_grpc
from webhooks_service.config import Settings
from webhooks_service.core import configs, keys, orgs
from webhooks_service.gateway import (
    EnvoyProcess,
    GatewayConfig,
    GatewayFiles,
    find_gateway_dir,
    parse_address,
)
from webhooks_service.storage import db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(url: str, n_configs: int) -> str:
    """Migrate, create an organisation with ``n_configs`` configs; return a read key."""
    engine = db.create_engine(url)
    db.upgrade(engine)
    org = orgs.create_org(engine, "Bench")
    for i in range(n_configs):
        configs.put_config(
            engine,
            Settings(database_url=url),
            org.id,
            config_id="",
            url=f"https://hooks{i}.example.com/in",
            event_types=["reward.*", "user.authenticated"],
            secret=None,
            enabled=True,
            description=f"bench endpoint {i}",
        )
    _, raw = keys.create_key(engine, org.id, [keys.SCOPE_WEBHOOKS_READ])
    engine.dispose()
    return raw


async def run_for(
    duration: float, concurrency: int, one_call: Callable[[], Awaitable[None]]
) -> tuple[int, float]:
    """(completed calls, elapsed seconds) of ``concurrency`` loops calling ``one_call``."""
    done = 0
    deadline = time.perf_counter() + duration

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await one_call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return done, time.perf_counter() - start


async def bench(
    rest_url: str, grpc_target: str, key: str, args: argparse.Namespace
) -> tuple[list[float], list[float]]:
    headers = {"authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=False)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        grpc.aio.insecure_channel(grpc_target) as channel,
    ):
        stub = admin_pb2_grpc.WebhookAdminStub(channel)
        metadata = (("authorization", f"Bearer {key}"),)
        request = admin_pb2.ListWebhookConfigsRequest()
        expected = args.configs

        async def rest_call() -> None:
            async with session.get(f"{rest_url}/webhooks/configs", headers=headers) as resp:
                body = await resp.json()
                if resp.status != 200 or len(body["configs"]) != expected:
                    raise RuntimeError(f"REST answered {resp.status}: {body}")

        async def grpc_call() -> None:
            reply = await stub.ListWebhookConfigs(request, metadata=metadata, timeout=10)
            if len(reply.configs) != expected:
                raise RuntimeError(f"gRPC answered {len(reply.configs)} configs")

        await run_for(args.warmup, args.concurrency, rest_call)
        await run_for(args.warmup, args.concurrency, grpc_call)
        rest_rates: list[float] = []
        grpc_rates: list[float] = []
        for r in range(args.rounds):
            order = [("REST", rest_call, rest_rates), ("gRPC", grpc_call, grpc_rates)]
            if r % 2:
                order.reverse()
            for name, call, rates in order:
                n, elapsed = await run_for(args.duration, args.concurrency, call)
                rates.append(n / elapsed)
                print(f"  round {r + 1}  {name:4}  {n:7d} calls  {n / elapsed:8.0f} /s", flush=True)
        return rest_rates, grpc_rates


def wait_for_grpc(target: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                sys.exit(f"webhooks serve exited with {proc.returncode}")
            try:
                grpc.channel_ready_future(channel).result(timeout=0.5)
                return
            except grpc.FutureTimeoutError:
                continue
    sys.exit(f"webhooks serve on {target} not ready after {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per round and side")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per side")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight per side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", type=int, default=10, help="configs in the listed org")
    parser.add_argument(
        "--envoy-concurrency", type=int, default=1, help="Envoy worker threads (2-core box: 1)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'webhooks.db'}"
        key = seed(url, args.configs)
        grpc_target = f"127.0.0.1:{free_port()}"
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "webhooks"),
                "serve",
                "--database-url",
                url,
                "--grpc-listen",
                grpc_target,
                "--log-level",
                "WARNING",
                "--rate-limit-per-second",
                "0",  # measure the gateway, not the per-key limit
            ],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            wait_for_grpc(grpc_target, server)
            gw_config = GatewayConfig(
                listen=parse_address("127.0.0.1:0", what="listen", allow_zero_port=True),
                upstreams=(parse_address(grpc_target, what="upstream"),),
                files=GatewayFiles.in_dir(find_gateway_dir()),
            )
            with EnvoyProcess(gw_config, concurrency=args.envoy_concurrency) as envoy:
                print(
                    f"GET /webhooks/configs ({args.configs} configs), concurrency "
                    f"{args.concurrency}, {args.rounds} rounds x {args.duration:g}s per side; "
                    f"server {grpc_target}, Envoy {envoy.base_url} "
                    f"(--concurrency {args.envoy_concurrency})",
                    flush=True,
                )
                rest, direct = asyncio.run(bench(envoy.base_url, grpc_target, key, args))
        finally:
            server.terminate()
            server.wait(timeout=30)
    rest_median, grpc_median = statistics.median(rest), statistics.median(direct)
    print(f"REST through Envoy : median {rest_median:8.0f} requests/s")
    print(f"gRPC direct        : median {grpc_median:8.0f} requests/s")
    print(f"REST / gRPC        : {rest_median / grpc_median:.2f}  (target >= 0.80)")


if __name__ == "__main__":
    main()
