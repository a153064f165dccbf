"""Links the service mints come from configuration, never from a request header
(issue 27.4): ``POST /webhooks/portal-sessions`` with ``Host: evil.example``
once answered ``http://evil.example/dashboard/#token=wpt_…``.

Both databases; REST through a real Envoy and gRPC straight to the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import pytest

from tests.support.envoy import free_listen_address, running_gateway
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks.v1 import admin_pb2, admin_pb2_grpc
from webhooks_service.gateway import EnvoyProcess

pytestmark = [pytest.mark.timeout(120)]

HOSTILE_HEADERS = {
    "host": "evil.example",
    "x-forwarded-host": "evil.example",
    "x-forwarded-proto": "https",
    "x-webhooks-gateway-origin": "http://evil.example",
}


@dataclass
class Stack:
    srv: RunningServer
    gw: EnvoyProcess
    key: str


@pytest.fixture
def stack(database_url: str) -> Iterator[Stack]:
    listen = free_listen_address()
    with (
        running_server(database_url, {"gateway_listen": listen}) as srv,
        running_gateway([srv.target], listen=listen) as gw,
    ):
        _, keys = make_org_and_keys(srv.engine)
        yield Stack(srv, gw, keys["all"])


@pytest.mark.gateway
def test_rest_portal_link_ignores_the_host_header(stack: Stack) -> None:
    expected = f"{stack.gw.base_url}/dashboard/#token="
    auth = {"authorization": f"Bearer {stack.key}"}
    plain = httpx.post(
        f"{stack.gw.base_url}/webhooks/portal-sessions", headers=auth, json={}, timeout=10
    )
    assert plain.status_code == 200, plain.text
    assert plain.json()["url"].startswith(expected)
    hostile = httpx.post(
        f"{stack.gw.base_url}/webhooks/portal-sessions",
        headers={**auth, **HOSTILE_HEADERS},
        json={},
        timeout=10,
    )
    assert hostile.status_code == 200, hostile.text
    body = hostile.json()
    assert body["url"].startswith(expected + body["token"]), body["url"]
    assert "evil" not in body["url"]
    # the served OpenAPI description names the gateway too
    spec = httpx.get(
        f"{stack.gw.base_url}/webhooks/openapi.json", headers=HOSTILE_HEADERS, timeout=10
    )
    assert spec.json()["servers"][0]["url"] == stack.gw.base_url


@pytest.mark.gateway
def test_grpc_portal_link_ignores_request_metadata(stack: Stack) -> None:
    with grpc.insecure_channel(stack.srv.target) as channel:
        made = admin_pb2_grpc.WebhookAdminStub(channel).CreatePortalSession(
            admin_pb2.CreatePortalSessionRequest(),
            metadata=(
                ("authorization", f"Bearer {stack.key}"),
                ("x-webhooks-gateway-origin", "http://evil.example"),
                ("x-forwarded-host", "evil.example"),
            ),
            timeout=10,
        )
    assert made.url.startswith(f"{stack.gw.base_url}/dashboard/#token={made.token}&"), made.url


def test_the_configured_dashboard_url_wins(database_url: str) -> None:
    base = "https://hooks.example.com/portal/"
    with running_server(database_url, {"dashboard_url": base}) as srv:
        _, keys = make_org_and_keys(srv.engine)
        with grpc.insecure_channel(srv.target) as channel:
            made = admin_pb2_grpc.WebhookAdminStub(channel).CreatePortalSession(
                admin_pb2.CreatePortalSessionRequest(),
                metadata=(
                    ("authorization", f"Bearer {keys['all']}"),
                    ("x-webhooks-gateway-origin", "http://evil.example"),
                ),
                timeout=10,
            )
    assert made.url.startswith(base + "#token=wpt_"), made.url
