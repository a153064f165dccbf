"""The example receivers in clients/python/examples, driven through their test clients.

Each runs on both frameworks and both dedupe stores, and checks what the sender
would see: a genuine event is processed once, a replay is answered 200 with no
work, a forged one 400, and a failing handler 500 (so the service retries) and
is processed on the retry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from examples import flask_receiver, starlette_receiver
from flask.testing import FlaskClient
from starlette.testclient import TestClient

from tests.support.payloads import example
from webhooks_client import Deduplicator, InMemoryStore, RedisStore, signed_headers

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

Post = Callable[[bytes, dict[str, str]], tuple[int, str]]


class Processor:
    """The receiver's business logic: records events, fails on demand."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.fail_next = False

    def __call__(self, event: dict[str, Any]) -> None:
        if self.fail_next:
            self.fail_next = False
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


@pytest.fixture(params=["starlette", "flask"])
def receiver(
    request: pytest.FixtureRequest, deduplicator: Deduplicator
) -> Iterator[tuple[Post, Processor]]:
    processor = Processor()
    if request.param == "starlette":
        app = starlette_receiver.create_app(SECRET, deduplicator=deduplicator, process=processor)
        with TestClient(app) as client:

            def post_starlette(body: bytes, headers: dict[str, str]) -> tuple[int, str]:
                response = client.post("/webhooks", content=body, headers=headers)
                return response.status_code, response.text

            yield post_starlette, processor
        return
    flask_app = flask_receiver.create_app(SECRET, deduplicator=deduplicator, process=processor)
    flask_client: FlaskClient = flask_app.test_client()

    def post_flask(body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        response = flask_client.post("/webhooks", data=body, headers=headers)
        return response.status_code, response.get_data(as_text=True)

    yield post_flask, processor


def delivery(event_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "id": event_id,
            "type": "reward.claimed",
            "timestamp": "2026-11-27T10:00:00Z",
            "data": example("reward.claimed"),
        }
    ).encode()
    headers = signed_headers(SECRET, body, msg_id=event_id)
    headers["content-type"] = "application/json"
    return body, headers


def test_event_is_processed_once_and_replay_is_200(receiver: tuple[Post, Processor]) -> None:
    post, processor = receiver
    body, headers = delivery("evt_once")
    assert post(body, headers) == (200, "processed")
    # The service retries (say its request timed out): fresh timestamp, same event id.
    replay_body, replay_headers = delivery("evt_once")
    assert post(replay_body, replay_headers) == (200, "duplicate")
    assert post(body, headers) == (200, "duplicate")
    assert processor.seen == ["evt_once"]


def test_bad_signature_is_rejected_without_work(receiver: tuple[Post, Processor]) -> None:
    post, processor = receiver
    body, headers = delivery("evt_forged")
    forged = body.replace(b"rwd_71hx", b"rwd_9")
    status, _ = post(forged, headers)
    assert status == 400
    unsigned = {k: v for k, v in headers.items() if k != "webhook-signature"}
    assert post(body, unsigned)[0] == 400
    assert processor.seen == []
    # The forgery did not poison the id: the genuine delivery still goes through.
    assert post(body, headers) == (200, "processed")


def test_failure_answers_500_and_the_retry_processes(receiver: tuple[Post, Processor]) -> None:
    post, processor = receiver
    processor.fail_next = True
    body, headers = delivery("evt_retry")
    assert post(body, headers)[0] == 500
    assert post(*delivery("evt_retry")) == (200, "processed")
    assert processor.seen == ["evt_retry"]


@pytest.mark.parametrize("module", [starlette_receiver, flask_receiver])
def test_store_follows_redis_url(module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert isinstance(module.deduplicator_from_env().store, InMemoryStore)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    store = module.deduplicator_from_env().store  # connects lazily: no server needed here
    assert isinstance(store, RedisStore)
    store.close()


@pytest.mark.parametrize("module", [starlette_receiver, flask_receiver])
def test_secret_is_required(module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    with pytest.raises(RuntimeError, match="WEBHOOK_SECRET"):
        module.create_app()


@pytest.mark.parametrize("module", [flask_receiver, starlette_receiver])
def test_example_business_logic_reads_the_typed_payload(
    module: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    body, _ = delivery("evt_typed")
    module.process_event(json.loads(body))
    assert "claimed rwd_71hx: 250 points" in caplog.text
    module.process_event({"id": "evt_new", "type": "reward.invented", "timestamp": "", "data": {}})
    assert "evt_new not understood" in caplog.text
