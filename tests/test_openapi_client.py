"""A client generated from the *served* OpenAPI description works (issue 14).

``openapi-python-client`` (a tool nobody here wrote) regenerates a client from
``GET /webhooks/openapi.json`` of a real gateway; the test then uses it for a
create, a list and a validation error whose field violations arrive as typed
objects. Skipped with a reason where the generator cannot be installed,
except under CI=true (it is a locked dev dependency).
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.envoy import IN_CI, running_gateway
from tests.support.server import make_org_and_keys, running_server

pytestmark = [pytest.mark.gateway, pytest.mark.timeout(180)]


def _generator() -> list[str]:
    exe = Path(sys.executable).parent / "openapi-python-client"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("openapi-python-client")
    if found:
        return [found]
    reason = "openapi-python-client is not installed (make venv installs the dev dependencies)"
    if IN_CI:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def generated(sqlite_template: Path, tmp_path: Path) -> Iterator[tuple[Any, str, str]]:
    """(generated package, gateway URL, admin key), the package generated from the
    description the gateway serves."""
    command = _generator()
    db = tmp_path / "webhooks.db"
    shutil.copyfile(sqlite_template, db)
    with running_server(f"sqlite:///{db}") as srv, running_gateway([srv.target]) as gw:
        _, keys = make_org_and_keys(srv.engine)
        served = httpx.get(f"{gw.base_url}/webhooks/openapi.json", timeout=10)
        assert served.status_code == 200
        assert served.json()["servers"][0]["url"] == gw.base_url
        spec = tmp_path / "openapi.json"
        spec.write_bytes(served.content)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        out = str(tmp_path / "webhooks_rest")
        result = subprocess.run(
            [*command, "generate", "--path", str(spec), "--meta", "none", "--output-path", out],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Warning" not in result.stdout, result.stdout
        sys.path.insert(0, str(tmp_path))
        try:
            package = importlib.import_module("webhooks_rest")
            yield package, gw.base_url, keys["all"]
        finally:
            sys.path.remove(str(tmp_path))
            for name in [m for m in sys.modules if m.split(".")[0] == "webhooks_rest"]:
                del sys.modules[name]


def test_generated_client_creates_lists_and_gets_typed_errors(
    generated: tuple[Any, str, str],
) -> None:
    package, base_url, key = generated
    models = importlib.import_module("webhooks_rest.models")
    client = package.AuthenticatedClient(base_url=base_url, token=key)

    put = importlib.import_module("webhooks_rest.api.webhook_admin.put_webhook_config")
    created = put.sync(
        client=client,
        body=models.PutWebhookConfigRequest(
            url="https://hooks.example.com/in",
            event_types=["reward.*"],
            description="generated client",
        ),
    )
    assert isinstance(created, models.PutWebhookConfigResponse), created
    assert created.created and created.secret.startswith("whsec_")
    config_id = created.config.id

    listing = importlib.import_module("webhooks_rest.api.webhook_admin.list_webhook_configs")
    page = listing.sync(client=client, page_size=50)
    assert isinstance(page, models.ListWebhookConfigsResponse)
    assert [c.id for c in page.configs] == [config_id]
    assert page.configs[0].description == "generated client"

    refused = put.sync(
        client=client,
        body=models.PutWebhookConfigRequest(url="ftp://nope", event_types=["no.such_type"]),
    )
    assert isinstance(refused, models.Status), refused
    assert refused.code == 3
    (detail,) = refused.details
    assert isinstance(detail, models.BadRequest)
    fields = {v.field for v in detail.field_violations}
    assert fields == {"url", "event_types[0]"}
    assert all(isinstance(v, models.FieldViolation) for v in detail.field_violations)

    logs = importlib.import_module("webhooks_rest.api.webhook_admin.list_delivery_logs")
    too_big = logs.sync(client=client, page_size=501)
    assert isinstance(too_big, models.Status)
    (detail,) = too_big.details
    assert isinstance(detail, models.BadRequest)
    assert detail.field_violations[0].field == "page_size"
