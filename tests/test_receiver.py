"""Receiver-side signature verification: what a receiver's code would see.

The reference is the `standardwebhooks` library (the spec authors' own): our
signatures must verify there and theirs here.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks
from hypothesis import given
from hypothesis import strategies as st

from webhooks_client import WebhookVerificationError, sign, signed_headers, verify

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
VECTOR_NOW = datetime.fromtimestamp(VECTOR_TS, UTC)

OTHER_SECRET = "whsec_" + base64.b64encode(b"another secret of 32 bytes......").decode()


def vector_headers(signature: str = VECTOR_SIG) -> dict[str, str]:
    return {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TS),
        "webhook-signature": signature,
    }


def test_vector_signs_and_verifies() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG
    event = verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=VECTOR_NOW)
    assert event == {"test": 2432232314}


def test_body_may_be_str_and_headers_any_case() -> None:
    headers = {k.upper(): v for k, v in vector_headers().items()}
    assert verify(VECTOR_SECRET, headers, VECTOR_BODY.decode(), now=VECTOR_NOW) == {
        "test": 2432232314
    }


def test_svix_header_names_are_accepted() -> None:
    headers = {k.replace("webhook-", "svix-"): v for k, v in vector_headers().items()}
    assert verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_NOW)


def test_our_signature_verifies_with_standardwebhooks() -> None:
    body = json.dumps({"id": "evt_1", "type": "reward.claimed", "data": {"n": 1}})
    headers = signed_headers(VECTOR_SECRET, body)
    assert standardwebhooks.Webhook(VECTOR_SECRET).verify(body, headers) == json.loads(body)


def test_standardwebhooks_signature_verifies_here() -> None:
    body = '{"id": "evt_2", "type": "user.authenticated", "data": {}}'
    now = datetime.now(UTC).replace(microsecond=0)
    signature = standardwebhooks.Webhook(VECTOR_SECRET).sign("evt_2", now, body)
    headers = {
        "webhook-id": "evt_2",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    assert verify(VECTOR_SECRET, headers, body.encode())["id"] == "evt_2"


def test_rotation_two_signatures_either_secret_passes() -> None:
    # The service signs with both secrets during a rotation.
    both = sign([OTHER_SECRET, VECTOR_SECRET], VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    assert len(both.split()) == 2
    assert VECTOR_SIG in both.split()
    for secret in (VECTOR_SECRET, OTHER_SECRET):
        assert verify(secret, vector_headers(both), VECTOR_BODY, now=VECTOR_NOW)
    # A receiver mid-rotation holds both secrets; a one-secret header matches either.
    assert verify([OTHER_SECRET, VECTOR_SECRET], vector_headers(), VECTOR_BODY, now=VECTOR_NOW)
    # standardwebhooks agrees on the two-entry header.
    lib_headers = signed_headers([OTHER_SECRET, VECTOR_SECRET], VECTOR_BODY)
    assert standardwebhooks.Webhook(OTHER_SECRET).verify(VECTOR_BODY, lib_headers)


def test_other_signature_versions_are_ignored() -> None:
    good = VECTOR_SIG.removeprefix("v1,")
    headers = vector_headers(f"v1a,{good} garbage v1,!!notbase64 {VECTOR_SIG}")
    assert verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_NOW)
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify(VECTOR_SECRET, vector_headers(f"v2,{good}"), VECTOR_BODY, now=VECTOR_NOW)


def test_tampered_body_is_rejected() -> None:
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify(VECTOR_SECRET, vector_headers(), b'{"test": 2432232315}', now=VECTOR_NOW)


def test_tampered_id_is_rejected() -> None:
    headers = vector_headers() | {"webhook-id": "msg_other"}
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_NOW)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify(OTHER_SECRET, vector_headers(), VECTOR_BODY, now=VECTOR_NOW)


@pytest.mark.parametrize(
    ("offset", "message"),
    [(timedelta(minutes=5, seconds=1), "too old"), (-timedelta(minutes=5, seconds=1), "future")],
)
def test_timestamp_outside_tolerance_is_rejected(offset: timedelta, message: str) -> None:
    with pytest.raises(WebhookVerificationError, match=message):
        verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=VECTOR_NOW + offset)


def test_timestamp_at_the_tolerance_edge_and_custom_tolerance() -> None:
    for offset in (timedelta(minutes=5), -timedelta(minutes=5)):
        assert verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=VECTOR_NOW + offset)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(
            VECTOR_SECRET,
            vector_headers(),
            VECTOR_BODY,
            now=VECTOR_NOW + timedelta(seconds=31),
            tolerance=timedelta(seconds=30),
        )


def test_stale_timestamp_is_rejected_even_if_signature_matches_at_current_time() -> None:
    # A replay captured long ago: the signature is genuine, the time is not.
    old = datetime.now(UTC) - timedelta(hours=1)
    headers = signed_headers(VECTOR_SECRET, VECTOR_BODY, timestamp=old)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(VECTOR_SECRET, headers, VECTOR_BODY)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(missing: str) -> None:
    headers = vector_headers()
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=f"missing {missing}"):
        verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_NOW)


@pytest.mark.parametrize("timestamp", ["1614265330.5", "-1614265330", "soon", "١٦١٤٢٦٥٣٣٠"])
def test_malformed_timestamp_is_rejected(timestamp: str) -> None:
    headers = vector_headers() | {"webhook-timestamp": timestamp}
    with pytest.raises(WebhookVerificationError, match="Unix seconds"):
        verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_NOW)


@pytest.mark.parametrize(("body", "message"), [(b"[1, 2]", "JSON object"), (b"{nope", "JSON")])
def test_signed_body_that_is_not_a_json_object_is_rejected(body: bytes, message: str) -> None:
    headers = signed_headers(VECTOR_SECRET, body)
    with pytest.raises(WebhookVerificationError, match=message):
        verify(VECTOR_SECRET, headers, body)


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_", []])
def test_malformed_secret_is_a_configuration_error(secret: str | list[str]) -> None:
    # ValueError, not WebhookVerificationError: the receiver must answer 5xx, not reject.
    with pytest.raises(ValueError):
        verify(secret, vector_headers(), VECTOR_BODY, now=VECTOR_NOW)


def test_raw_key_bytes_are_accepted_as_secret() -> None:
    key = base64.b64decode(VECTOR_SECRET.removeprefix("whsec_"))
    assert sign(key, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(
    key=st.binary(min_size=1, max_size=64),
    msg_id=st.text(min_size=1).filter(lambda s: s.strip() == s and s.isprintable()),
    data=st.dictionaries(st.text(), json_values, max_size=5),
    skew=st.integers(min_value=-300, max_value=300),
)
def test_sign_verify_round_trip_agrees_with_standardwebhooks(
    key: bytes, msg_id: str, data: dict[str, object], skew: int
) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    body = json.dumps(data, ensure_ascii=False)
    headers = signed_headers(secret, body, msg_id=msg_id, timestamp=VECTOR_TS)
    now = VECTOR_NOW + timedelta(seconds=skew)
    assert verify(secret, headers, body.encode(), now=now) == data
    lib_sig = standardwebhooks.Webhook(secret).sign(msg_id, VECTOR_NOW, body)
    assert headers["webhook-signature"] == lib_sig
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, body.encode() + b" ", now=now)
