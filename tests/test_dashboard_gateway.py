"""The gateway serves the dashboard and answers CORS for the allowed origins only.

Real Envoy in front of a real API server; no browser (tests/test_dashboard_browser.py
drives the dashboard itself).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.envoy import running_gateway
from tests.support.server import RunningServer, make_key, make_org, running_server
from webhooks_service.core import keys
from webhooks_service.errors import ConfigurationError
from webhooks_service.gateway import find_gateway_dir

pytestmark = [pytest.mark.gateway, pytest.mark.timeout(120)]

ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.com"
DASHBOARD = find_gateway_dir() / "dashboard"


@pytest.fixture(scope="module")
def api(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    path = tmp_path_factory.mktemp("dashboard-db") / "webhooks.db"
    shutil.copyfile(sqlite_template, path)
    with running_server(f"sqlite:///{path}") as srv:
        yield srv


@pytest.fixture(scope="module")
def cors_gateway(api: RunningServer) -> Iterator[str]:
    with running_gateway([api.target], cors_allowed_origins=[ALLOWED]) as gw:
        yield gw.base_url


@pytest.fixture(scope="module")
def plain_gateway(api: RunningServer) -> Iterator[str]:
    with running_gateway([api.target]) as gw:
        yield gw.base_url


def preflight(base: str, origin: str, path: str = "/webhooks/configs") -> httpx.Response:
    return httpx.options(
        base + path,
        headers={
            "origin": origin,
            "access-control-request-method": "PUT",
            "access-control-request-headers": "authorization, content-type",
        },
    )


def cors_headers(resp: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.startswith("access-control-")}


def test_preflight_from_an_allowed_origin(cors_gateway: str) -> None:
    for path in ("/webhooks/configs", "/webhooks/logs", "/webhooks/deliveries/dlv_1:retry"):
        resp = preflight(cors_gateway, ALLOWED, path)
        assert resp.status_code == 200, resp.text
        headers = cors_headers(resp)
        assert headers["access-control-allow-origin"] == ALLOWED
        assert "PUT" in headers["access-control-allow-methods"]
        assert "authorization" in headers["access-control-allow-headers"]
        assert headers["access-control-max-age"] == "600"


def test_preflight_from_another_origin_gets_no_cors_headers(
    cors_gateway: str, plain_gateway: str
) -> None:
    for base, origin in ((cors_gateway, OTHER), (plain_gateway, ALLOWED)):
        resp = preflight(base, origin)
        assert cors_headers(resp) == {}
        assert resp.status_code == 405  # what OPTIONS gets without CORS


def test_actual_requests_carry_the_origin_for_allowed_origins(
    api: RunningServer, cors_gateway: str
) -> None:
    org = make_org(api.engine)
    key = make_key(api.engine, org, keys.SCOPE_WEBHOOKS_READ)
    auth = {"authorization": f"Bearer {key}"}
    ok = httpx.get(f"{cors_gateway}/webhooks/configs", headers={**auth, "origin": ALLOWED})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ALLOWED
    # errors too, so the page can read the message
    denied = httpx.get(f"{cors_gateway}/webhooks/configs", headers={"origin": ALLOWED})
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == ALLOWED
    other = httpx.get(f"{cors_gateway}/webhooks/configs", headers={**auth, "origin": OTHER})
    assert other.status_code == 200 and cors_headers(other) == {}


def test_dashboard_is_served_same_origin(plain_gateway: str, cors_gateway: str) -> None:
    root = httpx.get(plain_gateway + "/")
    assert root.status_code == 302 and root.headers["location"].endswith("/dashboard/")
    page = httpx.get(plain_gateway + "/dashboard/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text == (DASHBOARD / "index.html").read_text()
    assert page.headers["referrer-policy"] == "no-referrer"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'self'" in csp
    assert ALLOWED not in csp
    # the host platform's origin may embed it
    assert ALLOWED in httpx.get(cors_gateway + "/dashboard/").headers["content-security-policy"]
    for asset in DASHBOARD.iterdir():
        resp = httpx.get(f"{plain_gateway}/dashboard/{asset.name}")
        assert resp.status_code == 200, asset.name
        assert resp.content == asset.read_bytes()
    # every asset is local: nothing fetched from elsewhere at run time
    for asset in DASHBOARD.iterdir():
        text = asset.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text.replace("https://example.com", "")


def test_cors_origins_are_checked() -> None:
    from webhooks_service.config import Settings

    with pytest.raises(ConfigurationError, match="scheme://host"):
        Settings.load(env={"WEBHOOKS_CORS_ALLOWED_ORIGINS": "app.example.com"})
    with pytest.raises(ConfigurationError):
        Settings.load(env={"WEBHOOKS_CORS_ALLOWED_ORIGINS": "*"})
    loaded = Settings.load(
        env={"WEBHOOKS_CORS_ALLOWED_ORIGINS": "https://a.example.com/, http://localhost:3000"}
    )
    assert loaded.cors_allowed_origins == ("https://a.example.com", "http://localhost:3000")
