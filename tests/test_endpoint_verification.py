"""Endpoint ownership verification (issue 23): the webhook.verification challenge.

A real API server and delivery worker on both databases, a real HTTP receiver.
An endpoint of an organisation that requires verification receives the signed
challenge and nothing else until it echoes it; its deliveries wait (parked,
not lost) and arrive in full once it does. The challenge goes through the
delivery transport's target guard.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from tests.support.clients import ClientFactory, admin_client, client_kind  # noqa: F401
from tests.support.faults import statuses
from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Received, Receiver, Reply, running_receiver
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks.v1 import admin_pb2, admin_pb2_grpc, publisher_pb2_grpc
from webhooks_client import SigningScheme, make_publish_request
from webhooks_client import VerificationStatus as ClientVerification
from webhooks_client import receiver as helpers
from webhooks_service.core import config_validation, configs, orgs, verification
from webhooks_service.delivery.verification import challenge_sender
from webhooks_service.domain import PARKED_UNTIL, DeliveryStatus, VerificationStatus
from webhooks_service.storage.models import Delivery

pytestmark = pytest.mark.timeout(120)

SETTINGS = {"poll_interval": 0.05, "retry_schedule": (0.05, 0.05)}


def echoing(secret: str) -> Callable[[Received], Reply]:
    """A receiver that answers the challenge: README's few lines."""

    def respond(request: Received) -> Reply:
        answer = helpers.verification_answer(secret, request.headers, request.body)
        if answer is not None:
            return Reply(200, answer, {"content-type": "application/json"})
        return Reply()

    return respond


@pytest.fixture
def server(database_url: str) -> Iterator[RunningServer]:
    with running_server(database_url, SETTINGS, worker=True) as srv:
        yield srv


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


class Org:
    def __init__(self, server: RunningServer, name: str) -> None:
        self.id, keys = make_org_and_keys(server.engine, name)
        self.channel = grpc.insecure_channel(server.target)
        self.admin = admin_pb2_grpc.WebhookAdminStub(self.channel)
        self.publisher = publisher_pb2_grpc.EventPublisherStub(self.channel)
        self.meta = (("authorization", f"Bearer {keys['all']}"),)

    def put(self, **fields: Any) -> admin_pb2.PutWebhookConfigResponse:
        return self.admin.PutWebhookConfig(
            admin_pb2.PutWebhookConfigRequest(**fields), metadata=self.meta
        )

    def config(self, config_id: str) -> admin_pb2.WebhookConfig:
        listed = self.admin.ListWebhookConfigs(
            admin_pb2.ListWebhookConfigsRequest(), metadata=self.meta
        ).configs
        return next(c for c in listed if c.id == config_id)

    def publish(self, n: int) -> str:
        event_id = f"evt_verify_{self.id[-6:]}_{n}"
        request = make_publish_request(self.id, "reward.claimed", example(), id=event_id)
        self.publisher.PublishEvent(request, metadata=self.meta)
        return event_id

    def verify(self, config_id: str) -> admin_pb2.VerifyWebhookEndpointResponse:
        return self.admin.VerifyWebhookEndpoint(
            admin_pb2.VerifyWebhookEndpointRequest(config_id=config_id), metadata=self.meta
        )


@pytest.fixture
def org(server: RunningServer) -> Iterator[Org]:
    client = Org(server, "Verifies")
    orgs.set_endpoint_verification(server.engine, client.id, True)
    yield client
    client.channel.close()


def parked(server: RunningServer, config_id: str) -> int:
    d = Delivery.__table__
    with server.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(d)
                .where(
                    d.c.config_id == config_id,
                    d.c.status == "pending",
                    d.c.next_attempt_at >= PARKED_UNTIL,
                )
            ).scalar_one()
        )


def test_an_unverified_endpoint_receives_only_the_challenge_then_every_waiting_event(
    server: RunningServer, org: Org, rx: Receiver
) -> None:
    created = org.put(url=rx.url("/pending"), event_types=["*"])
    config = created.config
    assert config.verification_status == admin_pb2.VERIFICATION_STATUS_PENDING

    # The challenge arrives by itself, signed like a delivery.
    [challenge] = rx.wait_for(1, "/pending")
    sent = helpers.verify(created.secret, challenge.headers, challenge.body)
    assert sent["type"] == "webhook.verification"
    assert sent["data"]["config_id"] == config.id and len(sent["data"]["challenge"]) == 43
    # Answered "ok", not the challenge: still pending, with the reason.
    assert "did not echo" in eventually(
        lambda: org.config(config.id).verification_error, what="the challenge's error"
    )
    assert org.config(config.id).verification_status == admin_pb2.VERIFICATION_STATUS_PENDING

    published = [org.publish(n) for n in range(3)]
    # A sentinel in an organisation that does not require verification: once
    # its event arrived, the worker has been past the waiting ones.
    other = Org(server, "Sentinel")
    try:
        sentinel = other.put(url=rx.url("/sentinel"), event_types=["*"]).config
        assert sentinel.verification_status == admin_pb2.VERIFICATION_STATUS_NOT_REQUIRED
        other.publish(0)
        rx.wait_for(1, "/sentinel")
    finally:
        other.channel.close()
    assert parked(server, config.id) == 3
    assert rx.count("/pending") == 1  # the challenge, nothing else
    with pytest.raises(grpc.RpcError) as err:  # no test event either
        org.admin.SendTestEvent(
            admin_pb2.SendTestEventRequest(config_id=config.id), metadata=org.meta
        )
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert rx.count("/pending") == 1

    # The endpoint learns to answer; "verify again".
    rx.respond("/pending", echoing(created.secret))
    answer = org.verify(config.id)
    assert answer.verified and answer.error == ""
    assert answer.config.verification_status == admin_pb2.VERIFICATION_STATUS_VERIFIED
    assert answer.config.HasField("verified_at")
    delivered = eventually(
        lambda: (
            (ids := [r.headers["webhook-id"] for r in rx.requests("/pending")[2:]])
            and len(ids) >= 3
            and ids
        ),
        what="the waiting deliveries",
    )
    assert sorted(delivered) == sorted(published)  # in full, each once
    # Recorded, not only sent: a re-point while an attempt is in flight takes
    # its claim (storage/configs.py park_deliveries), and the delivery would
    # wait for the new URL's proof instead.
    eventually(
        lambda: statuses(server.engine, config.id) == {DeliveryStatus.DELIVERED: 3},
        what="the waiting deliveries recorded as delivered",
    )
    assert parked(server, config.id) == 0

    # Re-pointed: the proof was for the old URL.
    moved = org.put(id=config.id, url=rx.url("/moved"), event_types=["*"]).config
    assert moved.verification_status == admin_pb2.VERIFICATION_STATUS_PENDING
    rx.wait_for(1, "/moved")  # its own challenge
    org.publish(9)
    eventually(lambda: parked(server, config.id) == 1, what="the new event to wait")
    assert rx.count("/moved") == 1


def test_the_challenge_goes_through_the_target_guard(
    server: RunningServer, org: Org, rx: Receiver
) -> None:
    # Stored with the test server's settings (loopback allowed) and no
    # background challenge; then challenged by a process whose guard refuses
    # loopback, as a production one does.
    put = configs.put_config(
        server.engine,
        server.settings,
        org.id,
        config_id="",
        url=rx.url("/internal"),
        event_types=["*"],
        secret=None,
        enabled=None,
        description=None,
    )
    strict = replace(server.settings, allowed_target_networks=())

    async def challenge() -> verification.VerifyResult:
        async with challenge_sender(strict) as send:
            return await verification.verify_endpoint(
                server.engine, strict, org.id, put.config.id, send=send
            )

    result = asyncio.run(challenge())
    assert not result.verified
    assert "no answer" in result.error and "127.0.0.1" in result.error
    assert result.config.verification_status == VerificationStatus.PENDING
    assert rx.count() == 0  # nothing reached the loopback receiver


def test_verify_again_on_an_endpoint_that_need_not_verify_changes_no_delivery(
    server: RunningServer, rx: Receiver
) -> None:
    client = Org(server, "Optional")
    try:
        created = client.put(url=rx.url("/opt"), event_types=["*"])
        config = created.config
        assert config.verification_status == admin_pb2.VERIFICATION_STATUS_NOT_REQUIRED
        failed = client.verify(config.id)  # answers "ok": not a proof
        assert not failed.verified and "did not echo" in failed.error
        assert failed.config.verification_status == admin_pb2.VERIFICATION_STATUS_NOT_REQUIRED
        event_id = client.publish(1)
        eventually(
            lambda: any(r.headers["webhook-id"] == event_id for r in rx.requests("/opt")),
            what="the delivery of an endpoint that need not verify",
        )
        rx.respond("/opt", echoing(created.secret))
        proved = client.verify(config.id)
        assert proved.verified
        assert proved.config.verification_status == admin_pb2.VERIFICATION_STATUS_VERIFIED
        with pytest.raises(grpc.RpcError) as err:
            client.verify("whc_doesnotexist")
        assert err.value.code() is grpc.StatusCode.NOT_FOUND
    finally:
        client.channel.close()


def test_the_receiver_helper_answers_only_a_genuine_challenge() -> None:
    secret = config_validation.generate_secret()
    event = {"id": "evt_1", "type": "webhook.verification", "timestamp": "2026-01-01T00:00:00Z"}
    body = json.dumps({**event, "data": {"config_id": "whc_1", "challenge": "abc"}}).encode()
    headers = helpers.signed_headers(secret, body, msg_id="evt_1")
    answer = helpers.verification_answer(secret, headers, body)
    assert answer is not None and json.loads(answer) == {"challenge": "abc"}
    with pytest.raises(helpers.WebhookVerificationError):  # forged: not ours to agree to
        helpers.verification_answer(config_validation.generate_secret(), headers, body)
    other = json.dumps({**event, "type": "reward.claimed", "data": {}}).encode()
    assert helpers.verification_answer(secret, helpers.signed_headers(secret, other), other) is None


def test_turning_the_requirement_off_releases_the_waiting_deliveries(
    server: RunningServer, org: Org, rx: Receiver
) -> None:
    config = org.put(url=rx.url("/waiting"), event_types=["*"]).config
    rx.wait_for(1, "/waiting")  # the challenge, answered "ok": not a proof
    published = {org.publish(n) for n in range(2)}
    eventually(lambda: parked(server, config.id) == 2, what="the deliveries to wait")
    assert orgs.set_endpoint_verification(server.engine, org.id, False) == 2
    eventually(
        lambda: {r.headers["webhook-id"] for r in rx.requests("/waiting")[1:]} == published,
        what="the released deliveries",
    )
    released = org.config(config.id)
    assert released.verification_status == admin_pb2.VERIFICATION_STATUS_NOT_REQUIRED


def test_the_typed_clients_switch_scheme_and_verify(
    server: RunningServer,
    org: Org,
    rx: Receiver,
    admin_client: ClientFactory,  # noqa: F811
) -> None:
    key = org.meta[0][1].removeprefix("Bearer ")
    with admin_client(server.target, key) as client:
        created = client.put_webhook_config(
            url=rx.url("/typed"), event_types=["*"], signing_scheme=SigningScheme.ED25519
        )
        config = created.config
        assert created.secret == ""
        assert config.signing_scheme is SigningScheme.ED25519
        assert config.public_key.startswith("whpk_") and config.public_key_id
        assert config.verification_status is ClientVerification.PENDING
        rx.respond("/typed", echoing(config.public_key))  # verifies v1a with the public key
        result = client.verify_webhook_endpoint(config.id)
        assert result.verified and result.error == ""
        assert result.config.verification_status is ClientVerification.VERIFIED
        [listed] = client.list_webhook_configs()
        assert listed.public_key == config.public_key


def test_the_example_receiver_proves_ownership_and_verifies_v1a(
    server: RunningServer, org: Org
) -> None:
    """The Flask example, given the endpoint's whpk_ key, answers the challenge
    (Deduplicator.handle does) and then processes the events, each once."""
    from examples import flask_receiver
    from werkzeug.serving import make_server

    from webhooks_client import Deduplicator, InMemoryStore

    seen: list[str] = []
    apps: list[Any] = []  # the example, once the endpoint's public key is known

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        if not apps:
            start_response("503 Service Unavailable", [("content-type", "text/plain")])
            return [b"not yet"]
        return apps[0](environ, start_response)

    httpd = make_server("127.0.0.1", 0, wsgi, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/webhooks"
        config = org.put(
            url=url, event_types=["*"], signing_scheme=admin_pb2.SIGNING_SCHEME_ED25519
        ).config
        apps.append(
            flask_receiver.create_app(
                config.public_key,
                deduplicator=Deduplicator(InMemoryStore()),
                process=lambda event: seen.append(event["id"]),
            )
        )
        answer = org.verify(config.id)
        assert answer.verified, answer.error
        event_id = org.publish(7)
        eventually(lambda: event_id in seen, what="the example to process the event")
        assert seen == [event_id]  # the challenge was answered, not processed
    finally:
        httpd.shutdown()
        thread.join(5)


def test_re_pointing_ends_the_claims_of_attempts_in_flight(database_url: str) -> None:
    """A delivery claimed (in flight to the old URL) when the endpoint is re-pointed:
    its attempt is not recorded and schedules no retry; it waits for the new proof."""
    from tests.support.server import test_settings
    from webhooks_service.core import publishing
    from webhooks_service.delivery.attempt import not_attempted
    from webhooks_service.domain import utcnow
    from webhooks_service.storage import configs as config_store
    from webhooks_service.storage import db, queue

    settings = test_settings(database_url)
    engine = db.create_engine(database_url)
    try:
        org_id = orgs.create_org(engine, "Repoint").id
        orgs.set_endpoint_verification(engine, org_id, True)
        put = configs.put_config(
            engine,
            settings,
            org_id,
            config_id="",
            url="https://old.example.com/hook",
            event_types=["*"],
            secret=None,
            enabled=None,
            description=None,
        )
        with db.write_transaction(engine) as conn:  # as if it had echoed the challenge
            config_store.set_verification(
                conn,
                org_id,
                put.config.id,
                url=put.config.url,
                status=VerificationStatus.VERIFIED,
                error="",
                verified_at=utcnow(),
            )
        item = publishing.EventInput(org_id, "", "reward.claimed", None, example())
        asyncio.run(publishing.publish_events(engine, settings, org_id, [item]))
        [claimed] = queue.claim_due(engine, now=utcnow(), lease_seconds=60, limit=10)
        configs.put_config(
            engine,
            settings,
            org_id,
            config_id=put.config.id,
            url="https://new.example.com/hook",
            event_types=["*"],
            secret=None,
            enabled=None,
            description=None,
        )
        finished = replace(not_attempted(claimed, utcnow()), attempted=True)
        assert queue.finish_batch(engine, [finished], now=utcnow()) == 0  # claim ended
        d = Delivery.__table__
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(d.c.status, d.c.next_attempt_at, d.c.claim_token).where(
                    d.c.id == claimed.id
                )
            ).one()
        assert row.status == "pending" and row.claim_token is None
        assert row.next_attempt_at >= PARKED_UNTIL
        assert queue.claim_due(engine, now=utcnow(), lease_seconds=60, limit=10) == []
    finally:
        engine.dispose()
