"""The receiver helpers against real deliveries from the service.

The API server and the delivery worker run in-process (the code `webhooks
serve` runs) on a real database; the Flask example receiver runs on a real
HTTP server on 127.0.0.1. The worker signs, POSTs and retries; the receiver
verifies and dedupes. What a receiver's owner would notice: every event is
processed exactly once even when a response is lost or the handler fails once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from examples import flask_receiver
from google.protobuf import struct_pb2
from werkzeug.serving import BaseWSGIServer, make_server

from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks.v1 import admin_pb2, admin_pb2_grpc, events_pb2, publisher_pb2, publisher_pb2_grpc
from webhooks_client import Deduplicator, InMemoryStore, RedisStore

FAST_RETRIES = {"retry_schedule": (0.05, 0.05, 0.05, 0.05), "poll_interval": 0.05}

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass
class Receiver:
    """The example app behind a middleware that can lose its first answers."""

    app: WsgiApp
    lose_responses: set[str] = field(default_factory=set)  # event ids
    # (event id, the app's status, the status the service got)
    answers: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        captured: list[str] = []

        def capture(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            captured.append(status)
            return start_response(status, headers, *args)

        event_id = environ.get("HTTP_WEBHOOK_ID", "")
        with self.lock:
            lose = event_id in self.lose_responses
            self.lose_responses.discard(event_id)
        if lose:
            # The app does the work, then the answer is lost on the way back (a
            # proxy error, say): the service sees a 502 and retries.
            for _ in self.app(environ, lambda s, h, *a: captured.append(s)):
                pass
            start_response("502 Bad Gateway", [("content-type", "text/plain")])
            result: Iterable[bytes] = [b"lost"]
            sent = "502"
        else:
            result = list(self.app(environ, capture))
            sent = captured[0].split()[0]
        with self.lock:
            self.answers.append((event_id, captured[0].split()[0], sent))
        return result


class Processor:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.fail_once: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        with self.lock:
            if event["id"] in self.fail_once:
                self.fail_once.discard(event["id"])
                raise RuntimeError("downstream unavailable")
            self.seen.append(event["id"])


@pytest.fixture(params=["memory", "redis"])
def deduplicator(request: pytest.FixtureRequest) -> Iterator[Deduplicator]:
    if request.param == "memory":
        yield Deduplicator(InMemoryStore())
        return
    store = RedisStore.from_url(
        request.getfixturevalue("redis_url"),
        key_prefix=request.getfixturevalue("redis_key_prefix"),
    )
    yield Deduplicator(store)
    store.close()


@pytest.fixture
def service(database_url: str) -> Iterator[RunningServer]:
    with running_server(database_url, FAST_RETRIES, worker=True) as srv:
        yield srv


def serve(app: WsgiApp) -> tuple[BaseWSGIServer, threading.Thread]:
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="test-receiver", daemon=True)
    thread.start()
    return httpd, thread


def example_struct() -> struct_pb2.Struct:
    data = struct_pb2.Struct()
    data.update(example("reward.claimed"))
    return data


def publish(channel: grpc.Channel, key: str, org_id: str, event_id: str) -> None:
    publisher = publisher_pb2_grpc.EventPublisherStub(channel)
    response = publisher.PublishEvent(
        publisher_pb2.PublishEventRequest(
            organisation_id=org_id,
            event=events_pb2.Event(id=event_id, type="reward.claimed", data=example_struct()),
        ),
        metadata=(("authorization", f"Bearer {key}"),),
    )
    assert response.deliveries == 1


def test_real_deliveries_are_verified_and_processed_once(
    service: RunningServer, deduplicator: Deduplicator
) -> None:
    org_id, keys = make_org_and_keys(service.engine)
    processor = Processor()
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    receiver = Receiver(
        flask_receiver.create_app(secret, deduplicator=deduplicator, process=processor)
    )
    httpd, thread = serve(receiver)
    try:
        with grpc.insecure_channel(service.target) as channel:
            admin = admin_pb2_grpc.WebhookAdminStub(channel)
            admin.PutWebhookConfig(
                admin_pb2.PutWebhookConfigRequest(
                    url=f"http://127.0.0.1:{httpd.server_port}/webhooks",
                    event_types=["reward.*"],
                    secret=secret,
                ),
                metadata=(("authorization", f"Bearer {keys['all']}"),),
            )
            receiver.lose_responses.add("evt_lost_answer")
            processor.fail_once.add("evt_handler_fails")
            for event_id in ("evt_plain", "evt_lost_answer", "evt_handler_fails"):
                publish(channel, keys["events:publish"], org_id, event_id)

        def settled() -> bool:
            done = {e for e, _, sent in receiver.answers if sent == "200"}
            return done >= {"evt_plain", "evt_lost_answer", "evt_handler_fails"}

        eventually(settled)
    finally:
        httpd.shutdown()
        thread.join(5)
        httpd.server_close()

    assert sorted(processor.seen) == ["evt_handler_fails", "evt_lost_answer", "evt_plain"]
    by_event: dict[str, list[str]] = {}
    for event_id, status, _ in receiver.answers:
        by_event.setdefault(event_id, []).append(status)
    assert by_event["evt_plain"] == ["200"]
    # Processed, answer lost, retried: the retry is a duplicate and does no work.
    assert by_event["evt_lost_answer"] == ["200", "200"]
    # The handler failed (500): the retry processed it.
    assert by_event["evt_handler_fails"] == ["500", "200"]
