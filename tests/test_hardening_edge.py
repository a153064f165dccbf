"""The edge holds (issue #13, item 7): failed authentication limited per client
address, nothing read before authentication, per-method sizes after, and the
gateway's header/idle timeouts, connection limit and 431.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest

from tests.support.envoy import require_envoy, running_gateway
from tests.support.polling import eventually
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks.v1 import admin_pb2, admin_pb2_grpc
from webhooks_service.gateway import EnvoyProcess, GatewayConfig, GatewayFiles, find_gateway_dir
from webhooks_service.gateway.config import parse_address

WEBHOOKS = str(Path(sys.executable).parent / "webhooks")
LIMITED = {"auth_failure_per_second": 1.0, "auth_failure_burst": 20}


@pytest.fixture
def limited(database_url: str) -> Iterator[tuple[RunningServer, str]]:
    with running_server(database_url, LIMITED) as srv:
        _, keys = make_org_and_keys(srv.engine)
        yield srv, keys["all"]


@pytest.mark.gateway
def test_1000_bad_key_calls_end_in_429s_with_retry_after(
    limited: tuple[RunningServer, str],
) -> None:
    srv, good = limited
    statuses: list[int] = []
    with (
        running_gateway([srv.target]) as gw,
        httpx.Client(base_url=gw.base_url, timeout=10) as rest,
    ):
        assert rest.get("/webhooks/configs", headers={"authorization": f"Bearer {good}"}).is_success
        first_429: httpx.Response | None = None
        started = time.monotonic()
        for n in range(1000):
            # A spoofed client address does not buy a fresh bucket: the gateway overwrites it.
            headers = {
                "authorization": f"Bearer whk_{n:020x}_nope",
                "x-webhooks-client-address": f"203.0.113.{n % 250}",
            }
            resp = rest.get("/webhooks/configs", headers=headers)
            statuses.append(resp.status_code)
            if resp.status_code == 429 and first_429 is None:
                first_429 = resp
        elapsed = time.monotonic() - started
        before = statuses.index(429)
        print(f"\nbad-key calls answered 401 before the first 429: {before}")
        assert set(statuses[:before]) == {401}
        # The burst, then one more 401 per refill (1 per second of the run, however
        # slow a loaded machine makes it); every other call is a 429.
        refills = int(elapsed * LIMITED["auth_failure_per_second"]) + 1
        burst = int(LIMITED["auth_failure_burst"])
        assert burst <= before <= burst + refills
        assert set(statuses) == {401, 429}
        assert statuses.count(401) <= burst + refills, (statuses.count(401), elapsed)
        assert first_429 is not None and int(first_429.headers["retry-after"]) >= 1
        assert first_429.json()["code"] == 8  # RESOURCE_EXHAUSTED
        # A working key from the same address still works (valid credentials are never throttled).
        ok = rest.get("/webhooks/configs", headers={"authorization": f"Bearer {good}"})
        assert ok.status_code == 200, ok.text


def test_bad_keys_over_grpc_are_limited_per_peer(limited: tuple[RunningServer, str]) -> None:
    srv, _ = limited
    codes = []
    with grpc.insecure_channel(srv.target) as channel:
        stub = admin_pb2_grpc.WebhookAdminStub(channel)
        for n in range(60):
            try:
                stub.ListWebhookConfigs(
                    admin_pb2.ListWebhookConfigsRequest(),
                    metadata=(("authorization", f"Bearer whk_{n:020x}_bad"),),
                    timeout=5,
                )
            except grpc.RpcError as err:
                codes.append(err.code())
    assert codes[:20] == [grpc.StatusCode.UNAUTHENTICATED] * 20
    assert codes[20:].count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 35


def test_admin_request_over_its_method_limit_is_resource_exhausted(
    database_url: str,
) -> None:
    with running_server(database_url) as srv:
        _, keys = make_org_and_keys(srv.engine)
        with grpc.insecure_channel(srv.target) as channel:
            stub = admin_pb2_grpc.WebhookAdminStub(channel)
            big = admin_pb2.PutWebhookConfigRequest(description="x" * (2 * 1024 * 1024))
            with pytest.raises(grpc.RpcError) as err:
                stub.PutWebhookConfig(
                    big, metadata=(("authorization", f"Bearer {keys['all']}"),), timeout=10
                )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "over the limit of 1048576 bytes" in (err.value.details() or "")


def _peak_rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    assert match
    return int(match.group(1))


@pytest.mark.slow
def test_unauthenticated_16_mib_messages_are_refused_without_reading_them(
    tmp_path: Path,
) -> None:
    proc = subprocess.Popen(
        [
            os.environ.get("WEBHOOKS_BENCH_BINARY", WEBHOOKS),  # another build, to compare
            "serve",
            "--database-url",
            f"sqlite:///{tmp_path / 'w.db'}",
            "--grpc-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "",
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        target = ""
        deadline = time.monotonic() + 60
        while not target and time.monotonic() < deadline:
            line = proc.stderr.readline()
            found = re.search(r"serving gRPC on (\S+)", line)
            if found:
                target = found.group(1)
        assert target, "serve did not start"
        payload = b"\x0a" + b"\xff" * (16 * 1024 * 1024 - 16)  # ~16 MiB, never parsed
        with grpc.insecure_channel(
            target, options=[("grpc.max_send_message_length", 32 * 1024 * 1024)]
        ) as channel:
            publish = channel.unary_unary(
                "/webhooks.v1.EventPublisher/PublishEvents",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            # Start-up allocations done: the server has answered one small call of
            # the same method (refused: no key) before the baseline is read.
            with pytest.raises(grpc.RpcError) as small:
                publish(b"", timeout=20)
            assert small.value.code() == grpc.StatusCode.UNAUTHENTICATED
            before = _peak_rss_kib(proc.pid)

            def call(_: int) -> grpc.StatusCode:
                try:
                    publish(payload, timeout=20)
                except grpc.RpcError as err:
                    return err.code()
                return grpc.StatusCode.OK

            with ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(call, range(8)))
        after = _peak_rss_kib(proc.pid)
        grown = (after - before) / 1024
        print(f"\nserve peak RSS grew {grown:.1f} MiB for 8 unauthenticated 16 MiB messages")
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 8
        # Reading them would take >= 128 MiB; what arrives before the refusal
        # varies with load (15-38 MiB seen here, once 51 under the full suite).
        assert grown < 64, f"server memory grew {grown:.1f} MiB (reading them: >= 128)"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def tight_gateway(database_url: str) -> Iterator[EnvoyProcess]:
    require_envoy()
    with running_server(database_url) as srv:
        config = GatewayConfig(
            listen=parse_address("127.0.0.1:0", what="listen", allow_zero_port=True),
            upstreams=(parse_address(srv.target, what="upstream"),),
            files=GatewayFiles.in_dir(find_gateway_dir()),
            health_check_interval_s=0.5,
            max_connections=5,
            request_headers_timeout_s=1.0,
            idle_timeout_s=2.0,
        )
        with EnvoyProcess(config, log_level="error", concurrency=1) as envoy:
            yield envoy


def _open(gw: EnvoyProcess) -> socket.socket:
    assert gw.listen is not None
    return socket.create_connection(("127.0.0.1", gw.listen.port), timeout=5)


def _active_connections(gw: EnvoyProcess) -> int:
    """Downstream connections Envoy's listener holds now (its own statistic)."""
    _, body = gw.admin_get("/stats?filter=^listener\\..*\\.downstream_cx_active$")
    values = [line.rpartition(": ")[2] for line in body.splitlines()]
    return max((int(v) for v in values if v.isdigit()), default=0)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


@pytest.mark.gateway
def test_slow_header_connections_are_closed(tight_gateway: EnvoyProcess) -> None:
    slow = _open(tight_gateway)
    slow.sendall(b"GET /webhooks/configs HTTP/1.1\r\nhost: x\r\n")  # never finishes its headers
    assert _closed_within(slow, 5.0)
    # closed by the request-headers timeout (Envoy's own count), not another one
    _, body = tight_gateway.admin_get("/stats?filter=^http\\.rest\\.downstream_rq_header_timeout$")
    assert body.strip().endswith(": 1"), body
    slow.close()


@pytest.mark.gateway
def test_connections_past_the_limit_are_refused(tight_gateway: EnvoyProcess) -> None:
    held = [_open(tight_gateway) for _ in range(5)]
    eventually(lambda: _active_connections(tight_gateway) >= 5, 10, "Envoy to hold 5 connections")
    extra = _open(tight_gateway)
    assert _closed_within(extra, 2.0)  # closed at once by the overload manager
    for sock in held:
        sock.close()
    extra.close()


@pytest.mark.gateway
def test_oversized_headers_are_431(tight_gateway: EnvoyProcess) -> None:
    resp = httpx.get(
        f"{tight_gateway.base_url}/webhooks/configs",
        headers={"authorization": "Bearer x", "x-big": "y" * 40_000},
        timeout=10,
    )
    assert resp.status_code == 431, resp.text
    assert resp.json()["code"] == 8
