"""Per-API-key rate limits: token buckets in the auth interceptor.

Unit tests with an injected clock for the bucket arithmetic; then the real
server with tiny limits over gRPC (RESOURCE_EXHAUSTED + RetryInfo), and
through a real Envoy (429, ``Retry-After``, the JSON envelope).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from tests.support.envoy import running_gateway
from tests.support.payloads import example
from tests.support.server import make_key, make_org_and_keys, running_server
from webhooks_client import AdminClient, PublisherClient, RateLimitedError
from webhooks_service.api.ratelimit import RateLimiter, retry_after_header
from webhooks_service.gateway import EnvoyProcess

TINY = {"rate_limit_per_second": 0.5, "rate_limit_burst": 2}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.acquire("key_a") for _ in range(3)] == [None, None, None]
    wait = limiter.acquire("key_a")
    assert wait == pytest.approx(0.5)
    assert limiter.acquire("key_b") is None  # buckets are per key
    clock.now += 0.5
    assert limiter.acquire("key_a") is None
    assert limiter.acquire("key_a") == pytest.approx(0.5)
    clock.now += 100  # refills up to the burst, not beyond
    assert [limiter.acquire("key_a") for _ in range(4)][-1] is not None


def test_zero_disables_and_retry_after_rounds_up() -> None:
    limiter = RateLimiter(0, 1)
    assert all(limiter.acquire("k") is None for _ in range(1000))
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.2) == "2"


def test_admin_calls_are_limited_per_key(database_url: str) -> None:
    with running_server(database_url, TINY) as srv:
        org_id, keys = make_org_and_keys(srv.engine)
        second = make_key(srv.engine, org_id, "webhooks:read")
        with AdminClient(srv.target, keys["all"]) as admin, AdminClient(srv.target, second) as b:
            admin.list_webhook_configs()
            admin.list_delivery_logs()
            with pytest.raises(RateLimitedError) as err:
                admin.list_webhook_configs()
            assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert err.value.retry_after is not None and 0 < err.value.retry_after <= 2.0
            assert "rate limit" in err.value.message
            # Another key of the same organisation has its own bucket.
            assert b.list_webhook_configs() == []
        # Publishing is not limited by default (internal traffic).
        with PublisherClient(srv.target, keys["events:publish"]) as publisher:
            for _ in range(10):
                publisher.publish_event(org_id, "user.opted_in", example("user.opted_in"))


def test_publishing_limit_is_separate_and_opt_in(database_url: str) -> None:
    with running_server(database_url, {**TINY, "publish_rate_limit_per_second": 0.5}) as srv:
        org_id, keys = make_org_and_keys(srv.engine)
        with PublisherClient(srv.target, keys["all"]) as publisher:
            publisher.publish_event(org_id, "user.opted_in", example("user.opted_in"))
            publisher.publish_event(org_id, "user.opted_in", example("user.opted_in"))
            with pytest.raises(RateLimitedError):
                publisher.publish_event(org_id, "user.opted_in", example("user.opted_in"))
        # The same key's admin bucket is untouched by publishing.
        with AdminClient(srv.target, keys["all"]) as admin:
            admin.list_webhook_configs()


@pytest.fixture(scope="module")
def limited_gateway(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[EnvoyProcess, Any]]:
    path = tmp_path_factory.mktemp("ratelimit-db") / "webhooks.db"
    shutil.copyfile(sqlite_template, path)
    with running_server(f"sqlite:///{path}", TINY) as srv, running_gateway([srv.target]) as gw:
        yield gw, srv


@pytest.mark.gateway
def test_rest_gets_429_with_retry_after(limited_gateway: tuple[EnvoyProcess, Any]) -> None:
    gw, srv = limited_gateway
    _, keys = make_org_and_keys(srv.engine)
    headers = {"authorization": f"Bearer {keys['webhooks:read']}"}
    with httpx.Client(base_url=gw.base_url, headers=headers, timeout=10) as rest:
        assert rest.get("/webhooks/configs").status_code == 200
        assert rest.get("/webhooks/logs").status_code == 200
        resp = rest.get("/webhooks/configs")
    assert resp.status_code == 429, resp.text
    assert resp.headers["retry-after"] in ("1", "2")
    assert resp.headers["content-type"].startswith("application/json")
    assert not [h for h in resp.headers if h.lower().startswith("grpc-")]
    body = resp.json()
    assert body["code"] == 8 and "rate limit" in body["message"]
    assert [d["@type"] for d in body["details"]] == ["type.googleapis.com/google.rpc.RetryInfo"]
