"""The Python client: standalone install, error tree, channels and timeouts.

Error statuses the admin API cannot be driven into (rate limiting, a crash,
a slow call) come from a real grpc.aio server that runs the service's auth
interceptor and error mapping in front of a deliberately broken servicer.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.clients import ClientFactory, admin_client, client_kind, publisher_client  # noqa: F401
from tests.support.fixtures import OrgKeys, org, server  # noqa: F401
from tests.support.payloads import example
from tests.support.server import RunningServer, running_server
from webhooks.v1 import admin_pb2, admin_pb2_grpc, payloads_pb2
from webhooks_client import (
    AdminClient,
    AsyncAdminClient,
    DeadlineExceededError,
    InternalError,
    InvalidArgumentError,
    RateLimitedError,
    UnauthenticatedError,
    UnavailableError,
    WebhooksClientError,
    make_publish_request,
)
from webhooks_service import errors
from webhooks_service.api.auth import AuthInterceptor

ROOT = Path(__file__).resolve().parents[1]


def test_client_imports_with_only_grpcio_protobuf_and_googleapis(tmp_path: Path) -> None:
    """Build a path holding only the client and its three dependencies (plus
    grpcio's own typing_extensions) and import the client from it, with site
    packages disabled."""
    import google.protobuf
    import typing_extensions

    site = Path(typing_extensions.__file__).parent
    for name in ("grpc", "google", "typing_extensions.py"):
        (tmp_path / name).symlink_to(site / name)
    assert (site / "google" / "protobuf").samefile(Path(google.protobuf.__file__).parent)
    for name in ("webhooks", "webhooks_client"):
        (tmp_path / name).symlink_to(ROOT / "clients" / "python" / name)
    code = (
        f"import sys; sys.path[:0] = [{str(tmp_path)!r}]\n"
        "import webhooks_client as c\n"
        "assert c.AdminClient and c.PublisherClient and c.InvalidArgumentError\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'webhooks_service', 'grpc_status', 'redis')]\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-E", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_public_api_is_explicit() -> None:
    import webhooks_client

    assert "AdminClient" in webhooks_client.__all__
    assert all(hasattr(webhooks_client, name) for name in webhooks_client.__all__)


def test_invalid_argument_carries_code_message_and_violations(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    admin_client: ClientFactory,  # noqa: F811
) -> None:
    with (
        admin_client(server.target, org.all) as client,
        pytest.raises(InvalidArgumentError) as info,
    ):
        client.put_webhook_config(url="ftp://x", event_types=["*"], description="d" * 300)
    err = info.value
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "url" in err.message
    assert [v.field for v in err.field_violations] == ["url", "description"]
    assert "url: must be an absolute http or https URL" in str(err)
    assert isinstance(err, WebhooksClientError)


def test_passed_channel_is_used_and_left_open(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
) -> None:
    channel = grpc.insecure_channel(server.target)
    with AdminClient("ignored:1", org.read, channel=channel) as client:
        assert client.list_webhook_configs() == []
    # Still usable after the client closed.
    stub = admin_pb2_grpc.WebhookAdminStub(channel)
    stub.ListWebhookConfigs(
        admin_pb2.ListWebhookConfigsRequest(), metadata=(("authorization", f"Bearer {org.read}"),)
    )
    channel.close()


def test_unreachable_server_is_unavailable(admin_client: ClientFactory) -> None:  # noqa: F811
    with (
        admin_client("127.0.0.1:1", "whk_x_y", timeout=2) as client,
        pytest.raises((UnavailableError, DeadlineExceededError)),
    ):
        client.list_webhook_configs()


def test_database_down_is_unavailable(admin_client: ClientFactory) -> None:  # noqa: F811
    from webhooks_service.storage import db

    dead = db.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", pool_pre_ping=False)
    try:
        with (
            running_server("sqlite:///unused.db", engine=dead) as srv,
            admin_client(srv.target, "whk_0123456789abcdef0123_secret") as client,
            pytest.raises(UnavailableError, match="database"),
        ):
            client.list_webhook_configs()
    finally:
        dead.dispose()


def test_publish_event(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    publisher_client: ClientFactory,  # noqa: F811
) -> None:
    with publisher_client(server.target, org.publish) as client:
        first = client.publish_event(
            org.id, "reward.claimed", example("reward.claimed"), id="evt_client_1"
        )
        again = client.publish_event(
            org.id, "reward.claimed", example("reward.claimed"), id="evt_client_1"
        )
    assert first.event_id == "evt_client_1" and not first.duplicate
    assert again.duplicate


class BrokenAdmin(admin_pb2_grpc.WebhookAdminServicer):
    async def ListWebhookConfigs(self, request: Any, context: Any) -> Any:
        raise errors.ResourceExhausted("slow down", retry_after=2.5)

    async def PutWebhookConfig(self, request: Any, context: Any) -> Any:
        raise RuntimeError("database password is hunter2")

    async def ListDeliveryLogs(self, request: Any, context: Any) -> Any:
        await asyncio.sleep(5)
        return admin_pb2.ListDeliveryLogsResponse()


@contextmanager
def broken_server(engine: Any) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[grpc.aio.Server, int]:
        srv = grpc.aio.server(interceptors=[AuthInterceptor(engine)])
        # Only the RPCs under test; the others answer UNIMPLEMENTED.
        admin_pb2_grpc.add_WebhookAdminServicer_to_server(BrokenAdmin(), srv)  # type: ignore[abstract]
        port = srv.add_insecure_port("127.0.0.1:0")
        await srv.start()
        return srv, port

    srv, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(srv.stop(0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def broken(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    admin_client: ClientFactory,  # noqa: F811
) -> Iterator[AdminClient]:
    with broken_server(server.engine) as target, admin_client(target, org.all) as client:
        yield client


def test_rate_limited_carries_retry_after(broken: AdminClient) -> None:
    with pytest.raises(RateLimitedError) as info:
        broken.list_webhook_configs()
    assert info.value.retry_after == pytest.approx(2.5)
    assert info.value.message == "slow down"


def test_unexpected_error_is_internal_without_details(
    broken: AdminClient, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(InternalError) as info:
        broken.put_webhook_config(url="https://example.com", event_types=["*"])
    assert "hunter2" not in str(info.value)
    assert info.value.message.startswith("internal error (incident ")
    assert "hunter2" in caplog.text  # logged for the operator


def test_per_call_timeout(broken: AdminClient) -> None:
    with pytest.raises(DeadlineExceededError):
        broken.list_delivery_logs(timeout=0.2)


def test_bad_key_on_broken_server_is_still_unauthenticated(
    server: RunningServer,  # noqa: F811
    admin_client: ClientFactory,  # noqa: F811
) -> None:
    with (
        broken_server(server.engine) as target,
        admin_client(target, "whk_a_b") as client,
        pytest.raises(UnauthenticatedError),
    ):
        client.list_webhook_configs()


def test_typed_publish_infers_the_type(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    publisher_client: ClientFactory,  # noqa: F811
    admin_client: ClientFactory,  # noqa: F811
) -> None:
    with admin_client(server.target, org.all) as admin:
        admin.put_webhook_config(url="https://a.example/h", event_types=["reward.claimed"])
    claimed = payloads_pb2.RewardClaimed(user_id="usr_1", reward_id="rwd_1", points=2**63 - 1)
    claimed.claimed_at.FromJsonString("2026-11-27T10:15:00Z")
    with publisher_client(server.target, org.publish) as client:
        result = client.publish(org.id, claimed, id="evt_typed")
        assert (result.event_id, result.deliveries) == ("evt_typed", 1)
        with pytest.raises(InvalidArgumentError) as info:
            client.publish(org.id, payloads_pb2.RewardClaimed(user_id="usr_1"))
        assert [v.field for v in info.value.field_violations] == [
            "event.payload.reward_id",
            "event.payload.claimed_at",
        ]
        batch = client.publish_events(
            [
                make_publish_request(org.id, claimed, id="evt_b1"),
                make_publish_request(org.id, claimed),
            ]
        )
        assert [r.deliveries for r in batch] == [1, 1]
    with admin_client(server.target, org.all) as admin:
        assert [t.name for t in admin.list_event_types(category="reward")][1] == "reward.claimed"


def test_asyncio_client_on_a_passed_aio_channel(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
) -> None:
    async def main() -> None:
        channel = grpc.aio.insecure_channel(server.target)
        async with AsyncAdminClient("ignored:1", org.read, channel=channel) as client:
            assert await client.list_webhook_configs() == []
        # still open: the client does not close a channel it did not create
        async with AsyncAdminClient("ignored:1", org.read, channel=channel) as client:
            assert [t async for t in client.iter_delivery_logs()] == []
        await channel.close()

    asyncio.run(main())
