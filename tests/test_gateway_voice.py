"""Every error through the gateway is in the API's voice (issue 14).

A real Envoy in front of a real API server. Envoy's own answers (the
request check in gateway/request_check.lua, its codec, its routes) must read
like the API's validation errors: the google.rpc.Status envelope, a message
naming the field or parameter and saying what is allowed, and a
google.rpc.BadRequest field violation where a field is at fault. Plus the
gRPC side: reflection v1 and v1alpha, native gRPC on the REST port.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from tests.support.envoy import running_gateway
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks.v1 import admin_pb2, admin_pb2_grpc, publisher_pb2, publisher_pb2_grpc
from webhooks_service.gateway import EnvoyProcess

pytestmark = [pytest.mark.gateway, pytest.mark.timeout(120)]

OUTCOMES = "OUTCOME_UNSPECIFIED, OUTCOME_DELIVERED, OUTCOME_RETRY_SCHEDULED, OUTCOME_FAILED"


@pytest.fixture(scope="module")
def api(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    path = tmp_path_factory.mktemp("voice-db") / "webhooks.db"
    shutil.copyfile(sqlite_template, path)
    with running_server(f"sqlite:///{path}") as srv:
        yield srv


@pytest.fixture(scope="module")
def gateway(api: RunningServer) -> Iterator[EnvoyProcess]:
    with running_gateway([api.target]) as gw:
        yield gw


@pytest.fixture(scope="module")
def rest(gateway: EnvoyProcess, api: RunningServer) -> Iterator[httpx.Client]:
    _, keys = make_org_and_keys(api.engine)
    headers = {"authorization": f"Bearer {keys['all']}"}
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=10) as client:
        yield client


def error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    assert set(body) == {"code", "message", "details"}, body
    return body


def violations(body: dict[str, Any]) -> list[tuple[str, str]]:
    (detail,) = body["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    return [(v["field"], v["description"]) for v in detail["field_violations"]]


def test_unknown_enum_value_lists_the_valid_ones(rest: httpx.Client) -> None:
    body = error(rest.get("/webhooks/logs", params={"outcome": "DELIVERED"}), 400)
    assert body["code"] == 3
    ((field, text),) = violations(body)
    assert field == "outcome" and OUTCOMES in text and '"DELIVERED"' in text
    assert "outcome" in body["message"] and OUTCOMES in body["message"]


def test_misspelt_parameter_is_named_with_a_suggestion(rest: httpx.Client) -> None:
    body = error(rest.get("/webhooks/logs", params={"configid": "whc_1"}), 400)
    ((field, text),) = violations(body)
    assert field == "configid"
    assert "did you mean config_id?" in text and "accepts config_id, event_id" in text


def test_repeated_query_parameter_is_refused(rest: httpx.Client) -> None:
    resp = rest.get("/webhooks/logs?outcome=OUTCOME_FAILED&outcome=OUTCOME_DEAD")
    ((field, text),) = violations(error(resp, 400))
    assert field == "outcome" and "more than once" in text
    resp = rest.get("/webhooks/configs?page_size=1&page_size=2")
    assert violations(error(resp, 400))[0][0] == "page_size"


@pytest.mark.parametrize("path", ["/webhooks/logs", "/webhooks/configs"])
@pytest.mark.parametrize("size", ["-1", "501", "100000"])
def test_one_page_size_rule_on_every_list(rest: httpx.Client, path: str, size: str) -> None:
    body = error(rest.get(path, params={"page_size": size}), 400)
    ((field, text),) = violations(body)
    assert field == "page_size" and text.startswith("must be between 0 and 500")
    assert "page_size" in body["message"]


def test_wrong_query_type_names_the_expected_type(rest: httpx.Client) -> None:
    ((field, text),) = violations(error(rest.get("/webhooks/logs?page_size=many"), 400))
    assert (field, text) == ("page_size", 'expected an integer, got "many"')


def test_id_filters_follow_the_id_rule(rest: httpx.Client) -> None:
    ((field, text),) = violations(error(rest.get("/webhooks/logs?config_id=bogus"), 400))
    assert field == "config_id" and "expected whc_" in text
    retry = error(rest.post("/webhooks/deliveries/xyz:retry"), 400)
    assert violations(retry)[0][0] == "delivery_id"
    assert rest.get("/webhooks/logs?config_id=whc_0000").json()["logs"] == []


def test_percent_encoded_placeholder_gets_a_real_message(rest: httpx.Client) -> None:
    ((field, text),) = violations(error(rest.get("/webhooks/logs?config_id=whc_%E2%80%A6"), 400))
    assert field == "config_id" and "placeholder" in text


def test_placeholder_pasted_raw_into_the_url(gateway: EnvoyProcess) -> None:
    """curl sends "…" as raw UTF-8, which Envoy's HTTP codec refuses outright."""
    assert gateway.listen is not None
    with socket.create_connection(("127.0.0.1", gateway.listen.port), timeout=5) as conn:
        conn.sendall("GET /webhooks/logs?config_id=whc_… HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        raw = conn.recv(65536).decode(errors="replace")
    head, _, body = raw.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400"), raw
    assert '"code":3' in body and "placeholder" in body and "percent-encode" in body


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[1]", "must be a JSON object"),
        (b'"x"', "must be a JSON object"),
        (b'{"url":', "not valid JSON: unexpected end of the body"),
        (b'{"url": "https://a.example/" "event_types": []}', 'expected "," or "}"'),
    ],
)
def test_malformed_bodies_in_plain_words(rest: httpx.Client, body: bytes, words: str) -> None:
    answer = error(rest.put("/webhooks/configs", content=body), 400)
    assert answer["code"] == 3 and words in answer["message"], answer
    assert "Root element" not in answer["message"]


def test_wrong_json_types_are_refused_not_coerced(rest: httpx.Client) -> None:
    resp = rest.put(
        "/webhooks/configs",
        content=b'{"url": 5, "event_types": "reward.*", "enabled": "false"}',
    )
    assert violations(error(resp, 400)) == [
        ("url", "expected a string, got the number 5"),
        ("event_types", 'expected an array of strings, got the string "reward.*"'),
        ("enabled", 'expected true or false, got the string "false"'),
    ]
    resp = rest.put("/webhooks/configs", json={"url": "https://a.example/", "event_types": [1]})
    assert violations(error(resp, 400))[0][0] == "event_types[0]"


def test_unknown_and_repeated_body_fields(rest: httpx.Client) -> None:
    resp = rest.put(
        "/webhooks/configs",
        json={"url": "https://a.example/", "event_types": ["*"], "enabeld": False},
    )
    ((field, text),) = violations(error(resp, 400))
    assert field == "enabeld" and "did you mean enabled?" in text
    resp = rest.put(
        "/webhooks/configs", content=b'{"url": "https://a.example/", "url": "https://b.example/"}'
    )
    assert violations(error(resp, 400))[0][0] == "url"


def test_enum_and_timestamp_in_a_body(rest: httpx.Client) -> None:
    resp = rest.post(
        "/webhooks/configs/whc_abc:replay", json={"since": "yesterday", "outcomes": ["DEAD"]}
    )
    found = dict(violations(error(resp, 400)))
    assert "RFC 3339" in found["since"] and OUTCOMES in found["outcomes[0]"]


def test_valid_requests_still_pass(rest: httpx.Client) -> None:
    created = rest.put(
        "/webhooks/configs",
        json={"url": "https://a.example/h", "event_types": ["*"], "enabled": False},
    )
    assert created.status_code == 200, created.text
    config_id = created.json()["config"]["id"]
    page = rest.get(f"/webhooks/logs?config_id={config_id}&outcome=OUTCOME_FAILED&page_size=5")
    assert page.status_code == 200 and page.json()["logs"] == []


def test_unknown_path_lists_the_endpoints(rest: httpx.Client) -> None:
    body = error(rest.get("/webhooks/nope"), 404)
    assert body["code"] == 5 and "GET /webhooks/logs" in body["message"]


def test_literal_private_address_refused_at_put(rest: httpx.Client) -> None:
    resp = rest.put("/webhooks/configs", json={"url": "http://10.0.0.1/h", "event_types": ["*"]})
    ((field, text),) = violations(error(resp, 400))
    assert field == "url" and "private address" in text


def test_native_grpc_on_the_rest_port_is_unimplemented_naming_the_grpc_address(
    gateway: EnvoyProcess, api: RunningServer
) -> None:
    assert gateway.listen is not None
    with grpc.insecure_channel(f"127.0.0.1:{gateway.listen.port}") as channel:
        publisher = publisher_pb2_grpc.EventPublisherStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            publisher.PublishEvent(publisher_pb2.PublishEventRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert api.target in (caught.value.details() or "")
        admin = admin_pb2_grpc.WebhookAdminStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            admin.ListWebhookConfigs(admin_pb2.ListWebhookConfigsRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_v1_and_v1alpha(api: RunningServer, version: str) -> None:
    with grpc.insecure_channel(api.target) as channel:
        call = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="webhooks.v1.EventPublisher"
            ),
        ]
        listed, described = list(call(iter(requests), timeout=5))
    names = {s.name for s in listed.list_services_response.service}
    assert {"webhooks.v1.WebhookAdmin", "webhooks.v1.EventPublisher"} <= names
    assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= (
        names
    )
    assert described.file_descriptor_response.file_descriptor_proto


def test_served_openapi_names_the_address_it_is_served_from(gateway: EnvoyProcess) -> None:
    resp = httpx.get(f"{gateway.base_url}/webhooks/openapi.json", timeout=10)
    assert resp.status_code == 200
    assert resp.json()["servers"][0]["url"] == gateway.base_url
    # the gateway's own address, never the request's Host (issue 27.4)
    other = httpx.get(f"{gateway.base_url}/webhooks/openapi.json", headers={"host": "evil.example"})
    assert other.json()["servers"][0]["url"] == gateway.base_url


def test_rest_update_keeps_absent_optional_fields(rest: httpx.Client) -> None:
    """The README's update example: a PUT without "description" keeps it."""
    body = {"url": "https://a.example/h", "event_types": ["*"], "description": "billing"}
    config = rest.put("/webhooks/configs", json=body).json()["config"]
    update = {"id": config["id"], "url": config["url"], "event_types": ["*"], "enabled": False}
    updated = rest.put("/webhooks/configs", json=update).json()["config"]
    assert (updated["description"], updated["enabled"]) == ("billing", False)
    cleared = rest.put("/webhooks/configs", json={**update, "description": ""}).json()["config"]
    assert cleared["description"] == ""
