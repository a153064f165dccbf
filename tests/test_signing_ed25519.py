"""ed25519 (Standard Webhooks v1a) signatures and the published key set (issue 23).

A real API server with its delivery worker on both databases, a real Envoy in
front of it, a real HTTP receiver. The receiver's check is an independent
verifier written here from the spec, with the ``cryptography`` package only
(not the project's helpers): ed25519 over ``"{webhook-id}.{webhook-timestamp}.{body}"``,
the signature from a ``v1a,<base64>`` entry of ``webhook-signature``, the key
picked by ``kid`` (from ``webhook-key-id``) out of the JWKS fetched through
Envoy without a key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.support.envoy import running_gateway
from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Received, Receiver, running_receiver
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks.v1 import admin_pb2, admin_pb2_grpc, publisher_pb2_grpc
from webhooks_client import make_publish_request
from webhooks_client import receiver as helpers
from webhooks_service.gateway import EnvoyProcess

pytestmark = [pytest.mark.gateway, pytest.mark.timeout(120)]

SETTINGS = {
    "poll_interval": 0.05,
    "retry_schedule": (0.05, 0.05),
    "jwks_cache_seconds": 0.2,
    "secret_rotation_grace_seconds": 3600.0,
    "secret_key": "k" * 40,  # sealed at rest
}


# --- the independent verifier (from the spec; cryptography only) -------------


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def thumbprint(x: str) -> str:
    """RFC 7638: SHA-256 of the required members in lexicographic order, no spaces."""
    canonical = '{"crv":"Ed25519","kty":"OKP","x":"' + x + '"}'
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def spec_verify(jwks: dict[str, Any], headers: dict[str, str], body: bytes) -> list[str]:
    """The kids whose key verifies one of the request's v1a signatures; raises
    InvalidSignature when none does."""
    by_kid = {k["kid"]: k for k in jwks["keys"]}
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    signatures = [
        base64.b64decode(entry.split(",", 1)[1])
        for entry in headers["webhook-signature"].split()
        if entry.startswith("v1a,")
    ]
    good = []
    for kid in headers.get("webhook-key-id", "").split():
        key = by_kid.get(kid)
        if key is None:
            continue
        assert key["kty"] == "OKP" and key["crv"] == "Ed25519"
        public = Ed25519PublicKey.from_public_bytes(b64url_decode(key["x"]))
        for signature in signatures:
            try:
                public.verify(signature, signed)
                good.append(kid)
            except InvalidSignature:
                pass
    if not good:
        raise InvalidSignature("no v1a signature verifies with a key of the set")
    return good


# --- fixtures ----------------------------------------------------------------


@pytest.fixture
def server(database_url: str) -> Iterator[RunningServer]:
    with running_server(database_url, SETTINGS, worker=True) as srv:
        yield srv


@pytest.fixture
def gateway(server: RunningServer) -> Iterator[EnvoyProcess]:
    with running_gateway([server.target]) as gw:
        yield gw


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


class Api:
    def __init__(self, server: RunningServer, base_url: str, key: str) -> None:
        self.channel = grpc.insecure_channel(server.target)
        self.admin = admin_pb2_grpc.WebhookAdminStub(self.channel)
        self.publisher = publisher_pb2_grpc.EventPublisherStub(self.channel)
        self.meta = (("authorization", f"Bearer {key}"),)
        self.rest = httpx.Client(base_url=base_url, timeout=10)

    def put(self, **fields: Any) -> admin_pb2.PutWebhookConfigResponse:
        request = admin_pb2.PutWebhookConfigRequest(**fields)
        return self.admin.PutWebhookConfig(request, metadata=self.meta)

    def publish(self, org: str) -> str:
        event_id = f"evt_{secrets.token_hex(8)}"  # new each time (a repeat would be a duplicate)
        request = make_publish_request(org, "reward.claimed", example(), id=event_id)
        self.publisher.PublishEvent(request, metadata=self.meta)
        return event_id

    def jwks(self, org: str) -> dict[str, Any]:
        response = self.rest.get(f"/webhooks/orgs/{org}/jwks.json")  # no authorization header
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "public, max-age=0"  # jwks_cache_seconds 0.2
        body: dict[str, Any] = response.json()
        return body

    def close(self) -> None:
        self.rest.close()
        self.channel.close()


@pytest.fixture
def api(server: RunningServer, gateway: EnvoyProcess) -> Iterator[tuple[Api, str]]:
    org, keys = make_org_and_keys(server.engine)
    client = Api(server, gateway.base_url, keys["all"])
    yield client, org
    client.close()


def delivery_of(rx: Receiver, path: str, event_id: str) -> Received:
    def find() -> Received | None:
        return next((r for r in rx.requests(path) if r.headers["webhook-id"] == event_id), None)

    return eventually(find, what=f"the delivery of {event_id}")


# --- tests ---------------------------------------------------------------------


def test_v1a_verifies_with_the_key_from_the_jwks_through_envoy(
    api: tuple[Api, str], rx: Receiver
) -> None:
    client, org = api
    created = client.put(
        url=rx.url("/ed"), event_types=["*"], signing_scheme=admin_pb2.SIGNING_SCHEME_ED25519
    )
    config = created.config
    assert created.secret == ""  # the private key is never answered
    assert config.signing_scheme == admin_pb2.SIGNING_SCHEME_ED25519
    assert config.public_key.startswith("whpk_")
    listed = client.admin.ListWebhookConfigs(
        admin_pb2.ListWebhookConfigsRequest(), metadata=client.meta
    ).configs
    assert [c.public_key for c in listed] == [config.public_key]

    jwks = client.jwks(org)
    [key] = jwks["keys"]
    assert set(key) == {"kty", "crv", "x", "kid", "use", "alg"}  # no "d": never private
    assert b64url_decode(key["x"]) == base64.b64decode(config.public_key.removeprefix("whpk_"))
    assert key["kid"] == thumbprint(key["x"]) == config.public_key_id

    event_id = client.publish(org)
    request = delivery_of(rx, "/ed", event_id)
    assert request.headers["webhook-signature"].startswith("v1a,")
    assert spec_verify(jwks, request.headers, request.body) == [key["kid"]]

    # Tampered body, tampered timestamp: no signature verifies.
    with pytest.raises(InvalidSignature):
        spec_verify(jwks, request.headers, request.body.replace(b"}", b" }", 1))
    later = dict(
        request.headers, **{"webhook-timestamp": str(int(request.headers["webhook-timestamp"]) + 1)}
    )
    with pytest.raises(InvalidSignature):
        spec_verify(jwks, later, request.body)

    # The project's receiver helpers agree, from the whpk_ key alone and from the
    # key set fetched through Envoy by the helper itself.
    payload = helpers.verify(config.public_key, request.headers, request.body)
    assert payload["id"] == event_id
    key_set = helpers.KeySet(f"{client.rest.base_url}/webhooks/orgs/{org}/jwks.json")
    assert helpers.verify(key_set, request.headers, request.body)["id"] == event_id
    for bad_headers, bad_body in ((later, request.body), (request.headers, request.body + b" ")):
        for verifier in (config.public_key, key_set):
            with pytest.raises(helpers.WebhookVerificationError):
                helpers.verify(verifier, bad_headers, bad_body)


def test_rotation_signs_with_both_keys_during_grace_and_only_the_new_one_after(
    server: RunningServer, api: tuple[Api, str], rx: Receiver
) -> None:
    client, org = api
    config = client.put(
        url=rx.url("/rot"), event_types=["*"], signing_scheme=admin_pb2.SIGNING_SCHEME_ED25519
    ).config
    old_kid = config.public_key_id
    rotated = client.admin.RotateWebhookSecret(
        admin_pb2.RotateWebhookSecretRequest(config_id=config.id), metadata=client.meta
    )
    assert rotated.secret == ""
    new = rotated.config
    assert new.public_key != config.public_key and new.previous_public_key == config.public_key
    assert rotated.HasField("previous_secret_expires_at")

    receiver_keys = helpers.KeySet(
        f"{client.rest.base_url}/webhooks/orgs/{org}/jwks.json", min_refresh_seconds=0
    )
    assert receiver_keys.public_keys([old_kid])  # fetched before the rotation's first delivery
    during = client.jwks(org)
    assert {k["kid"] for k in during["keys"]} == {old_kid, new.public_key_id}
    event_id = client.publish(org)
    request = delivery_of(rx, "/rot", event_id)
    assert request.headers["webhook-key-id"].split() == [new.public_key_id, old_kid]
    # Both keys verify: a receiver with either (an old cached key set) accepts it.
    assert sorted(spec_verify(during, request.headers, request.body)) == sorted(
        [new.public_key_id, old_kid]
    )
    old_only = {"keys": [k for k in during["keys"] if k["kid"] == old_kid]}
    assert spec_verify(old_only, request.headers, request.body) == [old_kid]
    helpers.verify(receiver_keys, request.headers, request.body)

    # The grace ends (moved to the past in the database): only the new key.
    with server.engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE webhook_configs SET previous_secret_expires_at = '2000-01-01 00:00:00'"
            " WHERE id = ?"
            if server.engine.dialect.name == "sqlite"
            else "UPDATE webhook_configs SET previous_secret_expires_at = '2000-01-01T00:00:00Z'"
            " WHERE id = %s",
            (config.id,),
        )

    def one_key() -> dict[str, Any] | None:
        body = client.jwks(org)
        return body if len(body["keys"]) == 1 else None

    after = eventually(one_key, what="the old key leaving the key set")
    assert [k["kid"] for k in after["keys"]] == [new.public_key_id]
    event_id = client.publish(org)
    request = delivery_of(rx, "/rot", event_id)
    assert request.headers["webhook-key-id"] == new.public_key_id
    assert spec_verify(after, request.headers, request.body) == [new.public_key_id]
    with pytest.raises(InvalidSignature):
        spec_verify(old_only, request.headers, request.body)
    helpers.verify(receiver_keys, request.headers, request.body)
    with pytest.raises(helpers.WebhookVerificationError):
        helpers.verify(config.public_key, request.headers, request.body)  # the old key: no more


def test_switching_from_hmac_to_ed25519_signs_with_both_during_grace(
    api: tuple[Api, str], rx: Receiver
) -> None:
    client, org = api
    created = client.put(url=rx.url("/switch"), event_types=["*"])
    secret = created.secret
    assert created.config.signing_scheme == admin_pb2.SIGNING_SCHEME_HMAC_SHA256
    switched = client.put(
        id=created.config.id,
        url=rx.url("/switch"),
        event_types=["*"],
        signing_scheme=admin_pb2.SIGNING_SCHEME_ED25519,
    ).config
    assert switched.signing_scheme == admin_pb2.SIGNING_SCHEME_ED25519
    assert switched.HasField("previous_key_expires_at") and switched.previous_public_key == ""
    event_id = client.publish(org)
    request = delivery_of(rx, "/switch", event_id)
    versions = [e.split(",", 1)[0] for e in request.headers["webhook-signature"].split()]
    assert sorted(versions) == ["v1", "v1a"]
    helpers.verify(secret, request.headers, request.body)  # the old HMAC receiver still works
    assert spec_verify(client.jwks(org), request.headers, request.body) == [switched.public_key_id]


def test_an_ed25519_endpoint_refuses_a_secret(api: tuple[Api, str], rx: Receiver) -> None:
    client, _ = api
    with pytest.raises(grpc.RpcError) as err:
        client.put(
            url=rx.url("/x"),
            event_types=["*"],
            secret="whsec_" + base64.b64encode(b"k" * 32).decode(),
            signing_scheme=admin_pb2.SIGNING_SCHEME_ED25519,
        )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "secret" in (err.value.details() or "")


def test_the_jwks_lists_only_the_organisations_own_public_keys(
    server: RunningServer, api: tuple[Api, str], rx: Receiver
) -> None:
    client, org = api
    other_org, other_keys = make_org_and_keys(server.engine, "Other")
    other = Api(server, str(client.rest.base_url), other_keys["all"])
    try:
        mine = client.put(
            url=rx.url("/a"), event_types=["*"], signing_scheme=admin_pb2.SIGNING_SCHEME_ED25519
        ).config
        client.put(url=rx.url("/hmac"), event_types=["*"])  # HMAC: nothing to publish
        theirs = other.put(
            url=rx.url("/b"), event_types=["*"], signing_scheme=admin_pb2.SIGNING_SCHEME_ED25519
        ).config
        assert [k["kid"] for k in client.jwks(org)["keys"]] == [mine.public_key_id]
        assert [k["kid"] for k in client.jwks(other_org)["keys"]] == [theirs.public_key_id]
        # Unknown, malformed and key-less organisations answer alike: no enumeration.
        empty_org, _ = make_org_and_keys(server.engine, "Empty")
        answers = {
            client.rest.get(f"/webhooks/orgs/{o}/jwks.json").text
            for o in (empty_org, "org_00000000000000000000", "nope", "x" * 200)
        }
        assert answers == {'{"keys":[]}'}
        # Nothing private anywhere in the answers.
        for body in (client.jwks(org), client.jwks(other_org)):
            for key in body["keys"]:
                assert "d" not in key and not any(str(v).startswith("whsk_") for v in key.values())
        # Over gRPC, without any metadata, the same.
        keys = client.admin.GetSigningKeys(admin_pb2.GetSigningKeysRequest(organisation_id=org))
        assert [k.kid for k in keys.keys] == [mine.public_key_id]
    finally:
        other.close()


def test_stored_private_keys_are_sealed(
    server: RunningServer, api: tuple[Api, str], rx: Receiver
) -> None:
    client, _ = api
    config = client.put(
        url=rx.url("/sealed"), event_types=["*"], signing_scheme=admin_pb2.SIGNING_SCHEME_ED25519
    ).config
    with server.engine.connect() as conn:
        stored = conn.exec_driver_sql(
            f"SELECT secret, public_key FROM webhook_configs WHERE id = '{config.id}'"
        ).one()
    assert stored[0].startswith("enc:v1:")  # sealed like a whsec_ secret
    assert stored[1] == config.public_key  # the public half in clear, for the key set


def test_only_the_key_set_is_served_without_a_key() -> None:
    """The gateway's description and the API agree on the one public operation."""
    from webhooks_service.api.auth import PUBLIC_METHODS
    from webhooks_service.gateway import find_gateway_dir

    spec = json.loads((find_gateway_dir() / "openapi.json").read_text())
    public = {
        op["operationId"]
        for item in spec["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and op.get("security") == []
    }
    assert public == {m.rsplit("/", 1)[1] for m in PUBLIC_METHODS} == {"GetSigningKeys"}


def _jwks_document(*publics: str) -> bytes:
    keys = []
    for public in publics:
        x = base64.urlsafe_b64encode(base64.b64decode(public[5:])).rstrip(b"=").decode()
        keys.append({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": thumbprint(x)})
    return json.dumps({"keys": keys}).encode()


def test_the_key_set_helper_caches_refreshes_on_an_unknown_kid_and_bounds_refreshes() -> None:
    from webhooks_service.signing_keys import generate_private_key, kid, public_key_of

    first, second = public_key_of(generate_private_key()), public_key_of(generate_private_key())
    served = [_jwks_document(first)]
    now = [1000.0]
    calls: list[str] = []

    def fetch(url: str) -> tuple[bytes, str]:
        calls.append(url)
        return served[-1], "public, max-age=300"

    key_set = helpers.KeySet(
        "https://h/jwks.json", fetch=fetch, clock=lambda: now[0], min_refresh_seconds=10
    )
    assert len(key_set.public_keys([kid(first)])) == 1 and len(calls) == 1
    assert len(key_set.public_keys([kid(first)])) == 1 and len(calls) == 1  # cached
    served.append(_jwks_document(first, second))
    # An unknown kid right after a fetch: no refetch yet (a flood cannot hammer the service).
    assert key_set.public_keys([kid(second)]) == [] and len(calls) == 1
    now[0] += 10
    assert len(key_set.public_keys([kid(second)])) == 1 and len(calls) == 2  # refreshed
    assert key_set.public_keys(["unknown"]) == [] and len(calls) == 2  # within 10 s again
    now[0] += 300
    key_set.public_keys([kid(first)])
    assert len(calls) == 3  # max-age ran out


def test_the_key_set_is_bounded_cache_hits_are_free_misses_rate_limited(
    database_url: str,
) -> None:
    limited = {**SETTINGS, "jwks_cache_seconds": 60.0, "jwks_reads_per_second": 1.0}
    with (
        running_server(database_url, limited) as srv,
        running_gateway([srv.target]) as gw,
        httpx.Client(base_url=gw.base_url, timeout=10) as rest,
    ):
        org, _ = make_org_and_keys(srv.engine)
        first = rest.get(f"/webhooks/orgs/{org}/jwks.json")
        assert first.status_code == 200
        assert first.headers["cache-control"] == "public, max-age=60"
        for _ in range(20):  # hits: no database read, no limit
            assert rest.get(f"/webhooks/orgs/{org}/jwks.json").status_code == 200
        # Misses (other organisations' ids) share a bucket of 2: the third waits.
        statuses = [
            rest.get(f"/webhooks/orgs/org_{n:020x}/jwks.json").status_code for n in range(3)
        ]
        assert statuses[:1] == [200] and statuses[-1] == 429
        limited_answer = rest.get("/webhooks/orgs/org_ffffffffffffffffffff/jwks.json")
        assert limited_answer.status_code == 429 and "retry-after" in limited_answer.headers
        # Malformed ids never read the database: never limited.
        assert rest.get("/webhooks/orgs/nope/jwks.json").text == '{"keys":[]}'
