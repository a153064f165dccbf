"""int64 fields are exact end to end (issue 27.7).

``publish_event(..., {"points": 2**53 + 1})`` was accepted and delivered as
``"9007199254740992"``: a Struct number is a double, and 2^53 + 1 arrives as
2^53, which the old check (``> 2^53``) let through. The rule now, proto JSON's:
int64 is exact as a decimal string; as a JSON number only within ±(2^53 - 1),
anything beyond is refused with a violation naming the field. The Python
client sends a Python int beyond that range as its decimal string, so the
issue's very call is delivered exactly.

Both databases; publish over gRPC (EventPublisher is not on REST), the
delivered body read back through the REST log behind a real Envoy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from google.protobuf import json_format

from tests.support.delivery_env import DeliveryEnv, delivery_env
from tests.support.envoy import running_gateway
from tests.support.payloads import example
from webhooks_client import InvalidArgumentError, make_publish_request

pytestmark = [pytest.mark.timeout(120)]

BEYOND = 2**53 + 1  # 9007199254740993: a double makes it ...992


@pytest.fixture
def env(database_url: str) -> Iterator[DeliveryEnv]:
    with delivery_env(database_url, {}) as e:
        yield e


def test_a_rounded_json_number_is_refused_naming_the_field(env: DeliveryEnv) -> None:
    # floats reach the server as the Struct's doubles, as from any gRPC client
    for number in (float(BEYOND), float(2**53), -float(2**53), float(2**60)):
        with pytest.raises(InvalidArgumentError) as err:
            env.publisher.publish_event(env.org_id, "reward.claimed", example(points=number))
        (violation,) = err.value.field_violations
        assert violation.field == "event.data.points", violation
        assert "decimal string" in violation.description


@pytest.mark.gateway
def test_int64_is_exact_from_publish_to_receiver_and_rest_log(env: DeliveryEnv) -> None:
    config, _ = env.config("/big", ["reward.claimed"])
    # the call: the client sends the int as its decimal string
    env.publisher.publish_event(env.org_id, "reward.claimed", example(points=BEYOND), id="client")
    # a decimal string, and the largest exact JSON number (a double in the Struct)
    env.publisher.publish_event(
        env.org_id, "reward.claimed", example(points=str(2**63 - 1)), id="string"
    )
    env.publisher.publish_event(
        env.org_id, "reward.claimed", example(points=float(2**53 - 1)), id="safe"
    )
    got = {json.loads(r.body)["id"]: r.body for r in env.rx.wait_for(3, "/big")}
    assert b'"points":"9007199254740993"' in got["client"]
    assert b'"points":"9223372036854775807"' in got["string"]
    assert b'"points":"9007199254740991"' in got["safe"]
    with running_gateway([env.srv.target]) as gw:
        resp = httpx.get(
            f"{gw.base_url}/webhooks/logs",
            params={"config_id": config.id, "view": "DELIVERY_LOG_VIEW_FULL"},
            headers={"authorization": f"Bearer {env.keys['all']}"},
            timeout=10,
        )
    assert resp.status_code == 200, resp.text
    bodies = {json.loads(e["request_body"])["id"]: e["request_body"] for e in resp.json()["logs"]}
    assert json.loads(bodies["client"])["data"]["points"] == "9007199254740993"
    assert json.loads(bodies["string"])["data"]["points"] == str(2**63 - 1)


def test_the_client_keeps_small_ints_as_numbers() -> None:
    request = make_publish_request("org_1", "reward.claimed", {"points": 10, "nested": [BEYOND]})
    data = json_format.MessageToDict(request.event.data)
    assert data == {"points": 10.0, "nested": [str(BEYOND)]}
