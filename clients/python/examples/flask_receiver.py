"""A webhook receiver on Flask, the pattern the docs recommend.

Verify the signature on the raw body, dedupe on the event id, answer 2xx when
the event is handled (or was already), 5xx to have the service retry later.

Run it:

    WEBHOOK_SECRET=whsec_... flask --app examples.flask_receiver:create_app run

Dedupe state is kept in memory (one process), or in Redis when REDIS_URL is set
(several processes or machines, e.g. gunicorn workers; needs
``webhooks-client[redis]``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request

from webhooks.v1.payloads_pb2 import ConsentTopic, RewardClaimed, UserOptedOut
from webhooks_client import Deduplicator, EventParseError, InMemoryStore, RedisStore, parse_event

log = logging.getLogger(__name__)


def process_event(event: dict[str, Any]) -> None:
    """Your business logic, on the typed payload. Raise to answer 500 (the service retries)."""
    try:
        envelope, data = parse_event(event)
    except EventParseError as exc:
        # A type or field these stubs do not know: upgrade webhooks-client. Acknowledge it
        # (a retry would not help) and keep the log line to follow up.
        log.warning("event %s not understood: %s", event.get("id"), exc)
        return
    if isinstance(data, RewardClaimed):
        log.info("user %s claimed %s: %d points", data.user_id, data.reward_id, data.points)
    elif isinstance(data, UserOptedOut):
        log.info("user %s opted out of %s", data.user_id, ConsentTopic.Name(data.topic))
    else:
        log.info("event %s of type %s", envelope.id, envelope.type)


def deduplicator_from_env() -> Deduplicator:
    redis_url = os.environ.get("REDIS_URL")
    return Deduplicator(RedisStore.from_url(redis_url) if redis_url else InMemoryStore())


def create_app(
    secret: str | None = None,
    *,
    deduplicator: Deduplicator | None = None,
    process: Callable[[dict[str, Any]], object] = process_event,
) -> Flask:
    secret = secret or os.environ.get("WEBHOOK_SECRET")
    if not secret:
        raise RuntimeError("set WEBHOOK_SECRET to the endpoint's whsec_... secret")
    dedupe = deduplicator or deduplicator_from_env()
    app = Flask(__name__)

    @app.post("/webhooks")
    def receive() -> Response:
        body = request.get_data()  # the raw bytes: the signature covers exactly these
        reply = dedupe.handle(secret, request.headers, body, process)
        return Response(reply.message, status=reply.status, headers=reply.headers)

    return app
