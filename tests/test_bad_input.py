"""Bad input at every door: each a clear client error, never a 500/INTERNAL/
UNKNOWN, never a hang.

gRPC against the real in-process server (SQLite and PostgreSQL), raw bytes
where a well-behaved client could not even build the request (invalid UTF-8,
corrupt wire format, Struct nesting past protobuf's decoder limit); REST
through a real Envoy. Every test also checks that the server logged no
unexpected error.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[attr-defined]

from tests.support.envoy import running_gateway
from tests.support.fixtures import OrgKeys, org, server  # noqa: F401
from tests.support.payloads import example
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks.v1 import admin_pb2, admin_pb2_grpc, events_pb2, publisher_pb2, publisher_pb2_grpc
from webhooks_service.gateway import EnvoyProcess
from webhooks_service.storage.models import WebhookConfig

CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
}


@pytest.fixture(autouse=True)
def no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.WARNING, logger="webhooks_service")
    yield
    assert "unexpected error" not in caplog.text, caplog.text


class Door:
    """Raw and typed gRPC calls with one organisation's keys."""

    def __init__(self, srv: RunningServer, keys: OrgKeys) -> None:
        self.keys = keys
        self.channel = grpc.insecure_channel(
            srv.target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        )
        self.admin = admin_pb2_grpc.WebhookAdminStub(self.channel)
        self.publisher = publisher_pb2_grpc.EventPublisherStub(self.channel)

    def meta(self, key: str | None = None) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {key or self.keys.all}"),)

    def raw(self, method: str) -> Callable[..., bytes]:
        return self.channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )

    def publish(self, event: events_pb2.Event, org_id: str | None = None, key: str = "") -> Any:
        request = publisher_pb2.PublishEventRequest(
            organisation_id=self.keys.id if org_id is None else org_id, event=event
        )
        return self.publisher.PublishEvent(request, metadata=self.meta(key), timeout=30)


@pytest.fixture
def door(server: RunningServer, org: OrgKeys) -> Iterator[Door]:  # noqa: F811
    d = Door(server, org)
    yield d
    d.channel.close()


def refused(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """Run a call that must fail with a client error; its code and message."""
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        call()
    code, message = err.value.code(), err.value.details() or ""
    assert code in CLIENT_ERRORS, (code, message)
    assert time.monotonic() - started < 10, "answered, but slowly"
    return code, message


def _ld(tag: int, payload: bytes) -> bytes:
    length: bytes = _VarintBytes(len(payload))
    return bytes([tag]) + length + payload


def nested_struct_bytes(depth: int) -> bytes:
    """A Struct {"a": {"a": ... {}}} ``depth`` levels deep, encoded by hand
    (the protobuf runtime refuses to build one past its own limit).

    Each level is a header in front of the level inside it, and a header depends
    only on the inner level's length: the headers are computed from the inside out
    and joined once (re-wrapping the whole struct at each level copied ~50 GB at
    depth 100,000: 10 s of CPU per call)."""
    key = _ld(0x0A, b"a")
    headers: list[bytes] = []
    size = 0  # of the struct built so far
    for _ in range(depth):
        value_len = 1 + len(_VarintBytes(size)) + size  # Value.struct_value (5)
        entry_len = len(key) + 1 + len(_VarintBytes(value_len)) + value_len
        header = (
            b"\x0a"  # Struct.fields entry
            + _VarintBytes(entry_len)
            + key
            + b"\x12"  # the entry's value
            + _VarintBytes(value_len)
            + b"\x2a"
            + _VarintBytes(size)
        )
        headers.append(header)
        size += len(header)
    return b"".join(reversed(headers))


def publish_bytes(org_id: str, event: bytes) -> bytes:
    return _ld(0x0A, org_id.encode()) + _ld(0x12, event)  # organisation_id, event


# -- PublishEvent --------------------------------------------------------------------


def test_oversized_data_is_invalid_argument_naming_the_limit(door: Door) -> None:
    data = struct_pb2.Struct()
    data.update(example("user.opted_in", source="x" * 300_000))
    code, message = refused(lambda: door.publish(events_pb2.Event(type="user.opted_in", data=data)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "event.data" in message and "262144" in message
    data.update({"source": "x" * (20 * 1024 * 1024)})  # past the 16 MiB message limit
    code, _ = refused(lambda: door.publish(events_pb2.Event(type="user.opted_in", data=data)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("depth", [40, 1000, 100_000])
def test_deeply_nested_data_is_invalid_argument(door: Door, depth: int) -> None:
    event = _ld(0x12, b"user.opted_in") + _ld(0x22, nested_struct_bytes(depth))
    call = door.raw("/webhooks.v1.EventPublisher/PublishEvent")
    code, message = refused(lambda: call(publish_bytes(door.keys.id, event), metadata=door.meta()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "nested too deeply" in message


def test_moderately_nested_data_is_checked_against_the_payload(door: Door) -> None:
    """Within the decoder's depth limit, nesting reaches payload validation, which
    names the unknown field (user.opted_in has no `a`)."""
    event = _ld(0x12, b"user.opted_in") + _ld(0x22, nested_struct_bytes(25))
    call = door.raw("/webhooks.v1.EventPublisher/PublishEvent")
    code, message = refused(lambda: call(publish_bytes(door.keys.id, event), metadata=door.meta()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "event.data.a" in message, message


@pytest.mark.parametrize(
    ("method", "payload"),
    [
        ("/webhooks.v1.EventPublisher/PublishEvent", b"\x0a\x03\xff\xfe\xfd"),
        ("/webhooks.v1.EventPublisher/PublishEvent", _ld(0x12, _ld(0x12, b"user.\xc3\x28"))),
        ("/webhooks.v1.WebhookAdmin/PutWebhookConfig", b"\x12\x03\xff\xfe\xfd"),
        ("/webhooks.v1.WebhookAdmin/ListDeliveryLogs", _ld(0x1A, b"whc_\xff")),
        ("/webhooks.v1.WebhookAdmin/PutWebhookConfig", b"\xff\xff\xff\xff"),
        ("/webhooks.v1.WebhookAdmin/ListWebhookConfigs", b"\x0a\xff\xff\xff\xff\x0f"),
    ],
    ids=["utf8-org", "utf8-type", "utf8-url", "utf8-filter", "garbage", "truncated"],
)
def test_undecodable_requests_are_invalid_argument(door: Door, method: str, payload: bytes) -> None:
    code, message = refused(lambda: door.raw(method)(payload, metadata=door.meta(), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith("malformed "), message
    # Without a key, the key is what is wrong: parsing reveals nothing first.
    code, _ = refused(lambda: door.raw(method)(payload, timeout=10))
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_unknown_event_types_are_invalid_argument_everywhere(door: Door) -> None:
    code, message = refused(lambda: door.publish(events_pb2.Event(type="user.exploded")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "event.type" in message
    code, _ = refused(lambda: door.publish(events_pb2.Event(type="")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    put = admin_pb2.PutWebhookConfigRequest(url="https://a.example/", event_types=["nope.*"])
    code, _ = refused(lambda: door.admin.PutWebhookConfig(put, metadata=door.meta()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    logs = admin_pb2.ListDeliveryLogsRequest(event_type="user.exploded")
    code, _ = refused(lambda: door.admin.ListDeliveryLogs(logs, metadata=door.meta()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "ts",
    [
        timestamp_pb2.Timestamp(seconds=-(10**12)),
        timestamp_pb2.Timestamp(seconds=10**15),
        timestamp_pb2.Timestamp(seconds=1, nanos=-5),
    ],
    ids=["before-year-1", "after-9999", "negative-nanos"],
)
def test_out_of_range_timestamps_are_invalid_argument(
    door: Door, ts: timestamp_pb2.Timestamp
) -> None:
    event = events_pb2.Event(type="user.opted_in", timestamp=ts)
    code, message = refused(lambda: door.publish(event))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "event.timestamp" in message


def test_nul_characters_are_refused_in_fields_but_fine_in_data(door: Door) -> None:
    put = admin_pb2.PutWebhookConfigRequest(
        url="https://a.example/", event_types=["*"], description="a\x00b"
    )
    code, message = refused(lambda: door.admin.PutWebhookConfig(put, metadata=door.meta()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "description" in message
    logs = admin_pb2.ListDeliveryLogsRequest(event_id="evt\x00")
    code, _ = refused(lambda: door.admin.ListDeliveryLogs(logs, metadata=door.meta()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = refused(
        lambda: door.publish(events_pb2.Event(type="user.opted_in"), org_id=door.keys.id + "\x00")
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    data = struct_pb2.Struct()
    data.update(example("user.opted_in", source="v\x00"))
    assert door.publish(events_pb2.Event(type="user.opted_in", data=data)).event_id


def test_batches_and_unknown_organisations(door: Door) -> None:
    one = publisher_pb2.PublishEventRequest(
        organisation_id=door.keys.id, event=events_pb2.Event(type="user.opted_in")
    )
    batch = publisher_pb2.PublishEventsRequest(requests=[one] * 5000)
    code, message = refused(lambda: door.publisher.PublishEvents(batch, metadata=door.meta()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "500" in message
    code, _ = refused(
        lambda: door.publish(
            events_pb2.Event(type="user.opted_in"), org_id="org_nope", key=door.keys.platform
        )
    )
    assert code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


# -- admin: sizes, numbers, huge strings ---------------------------------------------------


def test_page_sizes_and_enum_numbers(door: Door) -> None:
    most = admin_pb2.ListDeliveryLogsRequest(page_size=500)
    assert door.admin.ListDeliveryLogs(most, metadata=door.meta(), timeout=10) is not None
    configs = admin_pb2.ListWebhookConfigsRequest(page_size=500)
    assert door.admin.ListWebhookConfigs(configs, metadata=door.meta(), timeout=10) is not None
    huge = admin_pb2.ListWebhookConfigsRequest(page_size=2**31 - 1)
    code, _ = refused(lambda: door.admin.ListWebhookConfigs(huge, metadata=door.meta()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    for request in (
        admin_pb2.ListDeliveryLogsRequest(page_size=-1),
        admin_pb2.ListDeliveryLogsRequest(page_size=2**31 - 1),
        admin_pb2.ListDeliveryLogsRequest(outcome=99),  # type: ignore[arg-type]
    ):
        code, _ = refused(partial(door.admin.ListDeliveryLogs, request, metadata=door.meta()))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    negative = admin_pb2.ListWebhookConfigsRequest(page_size=-(2**31))
    code, _ = refused(lambda: door.admin.ListWebhookConfigs(negative, metadata=door.meta()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_huge_strings_get_short_clear_errors(door: Door) -> None:
    meta = door.meta()
    mb = "a" * 1_000_000
    put = admin_pb2.PutWebhookConfigRequest(
        id="whc_" + mb, url="https://a.example/", event_types=["*"]
    )
    code, message = refused(lambda: door.admin.PutWebhookConfig(put, metadata=meta))
    # Not the shape of a configuration id (core/ids.py), and said briefly.
    assert code == grpc.StatusCode.INVALID_ARGUMENT and len(message) <= 512
    put = admin_pb2.PutWebhookConfigRequest(url="https://a.example/" + mb, event_types=["*"])
    code, _ = refused(lambda: door.admin.PutWebhookConfig(put, metadata=meta))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # A hundred invalid 10 KB patterns: every violation echoes one; the
    # answer must still fit gRPC's trailer limit and stay INVALID_ARGUMENT.
    put = admin_pb2.PutWebhookConfigRequest(
        url="https://a.example/", event_types=[f"{i}" + "x" * 10_000 for i in range(100)]
    )
    code, _ = refused(lambda: door.admin.PutWebhookConfig(put, metadata=meta))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    put = admin_pb2.PutWebhookConfigRequest(url="https://a.example/", event_types=["*"] * 5000)
    code, _ = refused(lambda: door.admin.PutWebhookConfig(put, metadata=meta))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    token = admin_pb2.ListDeliveryLogsRequest(page_token="x" * 100_000)
    code, _ = refused(lambda: door.admin.ListDeliveryLogs(token, metadata=meta))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = refused(lambda: door.publish(events_pb2.Event(id="e" * 5000, type="user.opted_in")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


# -- quota: thousands of configurations -------------------------------------------------------


def test_config_quota_is_failed_precondition_and_configurable(database_url: str) -> None:
    with running_server(database_url, {"max_configs_per_org": 3}) as srv:
        door = Door(srv, OrgKeys(*make_org_and_keys(srv.engine)))
        put = admin_pb2.PutWebhookConfigRequest(url="https://a.example/", event_types=["*"])
        for _ in range(3):
            door.admin.PutWebhookConfig(put, metadata=door.meta(), timeout=10)
        code, message = refused(lambda: door.admin.PutWebhookConfig(put, metadata=door.meta()))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "maximum of 3" in message
        door.channel.close()


def test_thousands_of_configs_list_quickly_and_hit_the_quota(database_url: str) -> None:
    count = 2000
    with running_server(database_url, {"max_configs_per_org": count}) as srv:
        door = Door(srv, OrgKeys(*make_org_and_keys(srv.engine)))
        now = datetime.now(UTC)
        rows = [
            {
                "id": f"whc_bulk{i:06d}",
                "organisation_id": door.keys.id,
                "url": f"https://e{i}.example/",
                "event_types": ["*"],
                "enabled": True,
                "description": "",
                "secret": "whsec_" + "A" * 32,
                "disabled_reason": "",
                "created_at": now,
                "updated_at": now,
            }
            for i in range(count)
        ]
        with srv.engine.begin() as conn:
            conn.execute(sa.insert(WebhookConfig), rows)
        started = time.monotonic()
        put = admin_pb2.PutWebhookConfigRequest(url="https://a.example/", event_types=["*"])
        code, message = refused(lambda: door.admin.PutWebhookConfig(put, metadata=door.meta()))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and f"maximum of {count}" in message
        seen, token = 0, ""
        while True:
            page = door.admin.ListWebhookConfigs(
                admin_pb2.ListWebhookConfigsRequest(page_size=500, page_token=token),
                metadata=door.meta(),
                timeout=10,
            )
            seen += len(page.configs)
            token = page.next_page_token
            if not token:
                break
        assert seen == count
        assert time.monotonic() - started < 20
        door.channel.close()


# -- REST through Envoy -------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway_env(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[EnvoyProcess, dict[str, str]]]:
    path = tmp_path_factory.mktemp("bad-input-db") / "webhooks.db"
    shutil.copyfile(sqlite_template, path)
    with running_server(f"sqlite:///{path}") as srv, running_gateway([srv.target]) as gw:
        _, keys = make_org_and_keys(srv.engine)
        yield gw, {"authorization": f"Bearer {keys['all']}", "content-type": "application/json"}


def _envelope(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text[:300]
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    assert set(body) == {"code", "message", "details"}
    return body


REST_CASES: list[tuple[str, str, bytes, int]] = [
    ("PUT", "/webhooks/configs", b'{"url":"https://a.example/\xff\xfe","event_types":["*"]}', 400),
    ("PUT", "/webhooks/configs", b'{"url":"https://a.example/","description":"\xc3\x28"}', 400),
    ("GET", "/webhooks/logs?config_id=%ff%fe", b"", 400),
    ("GET", "/webhooks/logs?config_id=a%00b", b"", 400),
    ("PUT", "/webhooks/configs", b'{"url":"https://a.example/","description":"a\\u0000b"}', 400),
    ("PUT", "/webhooks/configs", b'{"url":"https://a.example/","description":"\\ud800"}', 400),
    ("PUT", "/webhooks/configs", b'{"url":' + b"[" * 10_000 + b"]" * 10_000 + b"}", 400),
    ("GET", "/webhooks/logs?page_size=-1", b"", 400),
    ("GET", "/webhooks/logs?page_size=99999999999", b"", 400),
    ("GET", "/webhooks/logs?event_type=user.exploded", b"", 400),
    ("PUT", "/webhooks/configs", b'{"description":"' + b"x" * (10 * 1024 * 1024) + b'"}', 413),
]


@pytest.mark.gateway
@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    REST_CASES,
    ids=[
        "utf8-body",
        "utf8-string",
        "utf8-query",
        "nul-query",
        "nul-json",
        "lone-surrogate",
        "deep-json",
        "negative-page-size",
        "page-size-past-int32",
        "unknown-event-type",
        "10MB-body",
    ],
)
def test_rest_bad_input_is_a_json_envelope(
    gateway_env: tuple[EnvoyProcess, dict[str, str]],
    method: str,
    path: str,
    body: bytes,
    status: int,
) -> None:
    gw, headers = gateway_env
    resp = httpx.request(method, gw.base_url + path, content=body, headers=headers, timeout=30)
    _envelope(resp, status)


@pytest.mark.gateway
def test_rest_huge_id_is_400_with_a_short_message(
    gateway_env: tuple[EnvoyProcess, dict[str, str]],
) -> None:
    gw, headers = gateway_env
    body = b'{"id":"' + b"a" * 100_000 + b'","url":"https://a.example/","event_types":["*"]}'
    resp = httpx.put(gw.base_url + "/webhooks/configs", content=body, headers=headers, timeout=30)
    assert len(_envelope(resp, 400)["message"]) <= 512
