"""API-key authentication and scopes through the real server."""

from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.fixtures import OrgKeys, org, server  # noqa: F401
from tests.support.payloads import example
from tests.support.server import RunningServer, make_key
from webhooks.v1 import admin_pb2, admin_pb2_grpc
from webhooks_client import (
    AdminClient,
    PermissionDeniedError,
    PublisherClient,
    UnauthenticatedError,
)
from webhooks_service.api.auth import METHOD_SCOPES, PUBLIC_METHODS
from webhooks_service.core import keys


def list_with_metadata(target: str, metadata: tuple[tuple[str, str], ...]) -> grpc.RpcError:
    with grpc.insecure_channel(target) as channel:
        stub = admin_pb2_grpc.WebhookAdminStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ListWebhookConfigs(admin_pb2.ListWebhookConfigsRequest(), metadata=metadata)
    return info.value


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "whk_abc_def"),),  # no scheme
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "Bearer "),),
        (("authorization", "Bearer not-a-key"),),
        (("authorization", "Bearer whk_0000000000000000_secret"),),  # unknown id
    ],
    ids=["missing", "no-scheme", "basic", "empty", "malformed", "unknown"],
)
def test_missing_or_invalid_key_is_unauthenticated(
    server: RunningServer,  # noqa: F811
    metadata: tuple[tuple[str, str], ...],
) -> None:
    err = list_with_metadata(server.target, metadata)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_right_id_with_wrong_secret_is_unauthenticated(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
) -> None:
    key = org.read
    tampered = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with AdminClient(server.target, tampered) as client, pytest.raises(UnauthenticatedError):
        client.list_webhook_configs()
    with AdminClient(server.target, key) as client:
        assert client.list_webhook_configs() == []


def test_scheme_is_case_insensitive(server: RunningServer, org: OrgKeys) -> None:  # noqa: F811
    with grpc.insecure_channel(server.target) as channel:
        stub = admin_pb2_grpc.WebhookAdminStub(channel)
        reply = stub.ListWebhookConfigs(
            admin_pb2.ListWebhookConfigsRequest(),
            metadata=(("authorization", f"bearer {org.read}"),),
        )
    assert list(reply.configs) == []


def test_missing_scope_is_permission_denied(server: RunningServer, org: OrgKeys) -> None:  # noqa: F811
    with AdminClient(server.target, org.read) as reader:
        with pytest.raises(PermissionDeniedError, match="webhooks:write"):
            reader.put_webhook_config(url="https://example.com", event_types=["*"])
        reader.list_webhook_configs()
        reader.list_delivery_logs()
    with AdminClient(server.target, org.write) as writer:
        writer.put_webhook_config(url="https://example.com", event_types=["*"])
        with pytest.raises(PermissionDeniedError, match="webhooks:read"):
            writer.list_webhook_configs()
        with pytest.raises(PermissionDeniedError):
            writer.list_delivery_logs()
    with AdminClient(server.target, org.publish) as publisher, pytest.raises(PermissionDeniedError):
        publisher.list_webhook_configs()


def test_admin_keys_cannot_publish(server: RunningServer, org: OrgKeys) -> None:  # noqa: F811
    with (
        PublisherClient(server.target, org.keys["webhooks:write"]) as client,
        pytest.raises(PermissionDeniedError, match="events:publish"),
    ):
        client.publish_event(org.id, "reward.claimed", example("reward.claimed"))


def test_platform_key_cannot_administer(server: RunningServer, org: OrgKeys) -> None:  # noqa: F811
    with AdminClient(server.target, org.platform) as client, pytest.raises(PermissionDeniedError):
        client.list_webhook_configs()


def test_every_contract_method_has_a_scope() -> None:
    from webhooks.v1 import admin_pb2 as a
    from webhooks.v1 import publisher_pb2 as p

    methods = {
        f"/{service.full_name}/{m.name}"
        for file in (a.DESCRIPTOR, p.DESCRIPTOR)
        for service in file.services_by_name.values()
        for m in service.methods
    }
    # Every method has a scope, except the few served without a key (the key set).
    assert methods == set(METHOD_SCOPES) | PUBLIC_METHODS
    assert not PUBLIC_METHODS & set(METHOD_SCOPES)
    assert {"/webhooks.v1.WebhookAdmin/GetSigningKeys"} == PUBLIC_METHODS


def test_health_and_reflection_need_no_key(server: RunningServer) -> None:  # noqa: F811
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "webhooks.v1.WebhookAdmin"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(stub.ServerReflectionInfo(iter([request])))
    names = {s.name for s in answer.list_services_response.service}
    assert {"webhooks.v1.WebhookAdmin", "webhooks.v1.EventPublisher"} <= names


def test_keys_are_stored_hashed(server: RunningServer, org: OrgKeys) -> None:  # noqa: F811
    secret_part = org.read.split("_", 2)[2]
    with server.engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM api_keys"))]
    assert stored and not any(secret_part in str(value) for row in stored for value in row)


def test_key_scopes_are_validated(server: RunningServer, org: OrgKeys) -> None:  # noqa: F811
    from webhooks_service.errors import InvalidArgument, NotFound

    with pytest.raises(InvalidArgument):
        keys.create_key(server.engine, org.id, ["webhooks:admin"])
    with pytest.raises(InvalidArgument):
        keys.create_key(server.engine, org.id, [])
    with pytest.raises(NotFound):
        keys.create_key(server.engine, "org_missing", ["webhooks:read"])
    assert make_key(server.engine, org.id, "webhooks:read").startswith("whk_")
