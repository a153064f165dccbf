"""The ownership challenge's request: signed and sent like a delivery.

``challenge_sender`` gives ``core/verification.py`` its ``Sender``: the
challenge body signed with every secret or key that signs now (the rotation
rule), the endpoint's custom headers, posted through the delivery
``Transport`` (the target guard inside the connector, no redirects, the
attempt timeout, the response body cap).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from webhooks_service.config import Settings
from webhooks_service.core.endpoint_headers import request_headers
from webhooks_service.core.secrets_at_rest import cipher_for
from webhooks_service.core.verification import Answer, Challenge, Sender
from webhooks_service.delivery.http import Transport
from webhooks_service.delivery.signing import webhook_headers
from webhooks_service.domain import previous_secret_signs, utcnow

__all__ = ["challenge_sender"]


@asynccontextmanager
async def challenge_sender(settings: Settings) -> AsyncIterator[Sender]:
    """A Sender on a transport of its own, closed on exit."""
    transport = Transport(settings)
    await transport.start()
    open_ = cipher_for(settings.secret_key).open

    async def send(challenge: Challenge) -> Answer:
        config = challenge.config
        now = utcnow()
        stored = [config.secret]
        if config.previous_secret and previous_secret_signs(config.previous_secret_expires_at, now):
            stored.append(config.previous_secret)
        body = challenge.payload.encode()
        signed = webhook_headers(
            [open_(s) for s in stored], challenge.event_id, int(now.timestamp()), body
        )
        headers = request_headers(signed, config.headers, open_)
        result = await transport.post(config.url, body, headers, None)
        return Answer(result.status_code, result.response_body, result.error)

    try:
        yield send
    finally:
        await transport.close()
