"""Standard Webhooks signatures: the brief's test vector, rotation, and the
reference library's verifier accepting what we send."""

from __future__ import annotations

import base64
import os

from standardwebhooks.webhooks import Webhook

from webhooks_service.delivery.signing import sign, signature_header, webhook_headers

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_brief_test_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE


def test_rotation_signs_with_every_secret_space_separated() -> None:
    other = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    header = signature_header([other, VECTOR_SECRET], VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    first, second = header.split(" ")
    assert second == VECTOR_SIGNATURE
    assert first.startswith("v1,") and first != VECTOR_SIGNATURE


def test_reference_library_verifies_our_headers_with_either_secret() -> None:
    import time

    old = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    new = "whsec_" + base64.b64encode(os.urandom(64)).decode()
    body = b'{"id":"evt_1","type":"reward.claimed","timestamp":"2026-01-01T00:00:00Z","data":{}}'
    headers = webhook_headers([new, old], "evt_1", int(time.time()), body)
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) is not None
