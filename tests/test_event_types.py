"""The catalog is discoverable: ListEventTypes over gRPC and REST (through the
real Envoy), and the ``webhooks event-types`` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.envoy import running_gateway
from tests.support.fixtures import OrgKeys, org, server  # noqa: F401
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks_client import AdminClient, InvalidArgumentError, PermissionDeniedError
from webhooks_service.core import catalog
from webhooks_service.gateway import EnvoyProcess

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def test_list_event_types_over_grpc(server: RunningServer, org: OrgKeys) -> None:  # noqa: F811
    with AdminClient(server.target, org.read) as admin:
        types = admin.list_event_types()
        rewards = admin.list_event_types(category="reward")
    names = [t.name for t in types]
    assert set(catalog.all_types()) <= set(names)
    assert len(names) == len(set(names))
    for t in types:
        assert t.category == t.name.split(".", 1)[0]
        assert t.description, t.name
        schema = t.schema
        assert schema["$schema"] == DRAFT and schema["type"] == "object", t.name
        assert isinstance(t.example, dict)
    assert [t.name for t in rewards] == [n for n in names if n.startswith("reward.")]


def test_unknown_category_names_the_valid_ones(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
) -> None:
    with AdminClient(server.target, org.read) as admin, pytest.raises(InvalidArgumentError) as info:
        admin.list_event_types(category="rewards")
    assert [v.field for v in info.value.field_violations] == ["category"]
    assert "reward" in info.value.field_violations[0].description


def test_list_event_types_needs_webhooks_read(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
) -> None:
    with (
        AdminClient(server.target, org.publish) as admin,
        pytest.raises(PermissionDeniedError, match="webhooks:read"),
    ):
        admin.list_event_types()


# -- through the real Envoy ------------------------------------------------------


@pytest.fixture(scope="module")
def gateway_api(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, EnvoyProcess]]:
    path = tmp_path_factory.mktemp("event-types-db") / "webhooks.db"
    shutil.copyfile(sqlite_template, path)
    with running_server(f"sqlite:///{path}") as srv, running_gateway([srv.target]) as gw:
        yield srv, gw


@pytest.mark.gateway
def test_get_event_types_through_envoy(gateway_api: tuple[RunningServer, EnvoyProcess]) -> None:
    srv, gw = gateway_api
    _, keys = make_org_and_keys(srv.engine)
    auth = {"authorization": f"Bearer {keys['webhooks:read']}"}
    with httpx.Client(base_url=gw.base_url, timeout=10) as rest:
        resp = rest.get("/webhooks/event-types", headers=auth)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == {"event_types"}
        entries = body["event_types"]
        assert set(catalog.all_types()) <= {e["name"] for e in entries}
        for entry in entries:
            assert set(entry) == {"name", "category", "description", "schema", "example"}
            # JSON objects, not strings (documented in admin.proto)
            assert isinstance(entry["schema"], dict) and entry["schema"]["$schema"] == DRAFT
            assert isinstance(entry["example"], dict)
        one = rest.get("/webhooks/event-types?category=referral", headers=auth).json()
        assert {e["category"] for e in one["event_types"]} == {"referral"}
        bad = rest.get("/webhooks/event-types?category=nope", headers=auth)
        assert bad.status_code == 400 and "category" in bad.text
        assert rest.get("/webhooks/event-types").status_code == 401
        denied = rest.get(
            "/webhooks/event-types", headers={"authorization": f"Bearer {keys['events:publish']}"}
        )
        assert denied.status_code == 403
        assert rest.post("/webhooks/event-types", headers=auth).status_code == 405


def test_cli_prints_the_catalog() -> None:
    cli = [sys.executable, "-m", "webhooks_service.cli", "event-types"]
    listing = subprocess.run(cli, capture_output=True, text=True, timeout=60, check=True).stdout
    assert [line.split()[0] for line in listing.splitlines()] == [t.name for t in catalog.TYPES]
    as_json = subprocess.run(
        [*cli, "--json", "--category", "reward"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert {t["category"] for t in json.loads(as_json)["event_types"]} == {"reward"}
    wrong = subprocess.run([*cli, "--schema", "reward.claim"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "reward.claimed" in wrong.stderr


@pytest.mark.gateway
def test_served_openapi_is_valid_and_has_one_webhook_per_type(
    gateway_api: tuple[RunningServer, EnvoyProcess],
) -> None:
    from openapi_spec_validator import validate

    srv, gw = gateway_api
    _, keys = make_org_and_keys(srv.engine)
    with httpx.Client(base_url=gw.base_url, timeout=10) as rest:
        spec = rest.get("/webhooks/openapi.json").json()
        served = rest.get(
            "/webhooks/event-types", headers={"authorization": f"Bearer {keys['webhooks:read']}"}
        ).json()["event_types"]
    validate(spec)  # OpenAPI 3.1, raises on any error
    assert spec["openapi"].startswith("3.1")
    assert list(spec["webhooks"]) == [t["name"] for t in served]
    schemas = spec["components"]["schemas"]
    for entry in served:
        op = spec["webhooks"][entry["name"]]["post"]
        headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        body = schemas[
            op["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
        ]
        assert body["required"] == ["id", "type", "timestamp", "data"]
        assert body["properties"]["type"]["const"] == entry["name"]
        data = schemas[body["properties"]["data"]["$ref"].split("/")[-1]]
        expected = {k: v for k, v in entry["schema"].items() if k not in ("$schema", "title")}
        assert data == expected
    # event_types of a configuration lists the valid values
    items = schemas["PutWebhookConfigRequest"]["properties"]["event_types"]["items"]
    assert items["type"] == "string"
    assert "*" in items["examples"] and "reward.*" in items["examples"]
    assert set(catalog.all_types()) <= set(items["examples"])
