"""DeleteWebhookConfig and per-endpoint custom headers.

Over gRPC (the typed client) on SQLite and PostgreSQL against the real server
with its worker and real HTTP receivers; then through the real Envoy (REST).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from tests.support.delivery_env import DeliveryEnv as Env
from tests.support.delivery_env import delivery_env, rest_delivery_env
from tests.support.polling import eventually
from tests.support.receiver import Reply
from tests.support.server import make_org_and_keys
from webhooks_client import (
    AdminClient,
    DeliveryOutcome,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from webhooks_service import cli
from webhooks_service.core import keys, retention
from webhooks_service.storage.models import utcnow

SLOW_RETRY = {"retry_schedule": (60.0, 60.0), "max_configs_per_org": 2}
FAST = {"retry_schedule": (0.05, 0.05)}
SECRET_KEY = "k" * 40


@pytest.fixture
def env(request: pytest.FixtureRequest, database_url: str) -> Iterator[Env]:
    with delivery_env(database_url, getattr(request, "param", FAST)) as e:
        yield e


def other_org_admin(env: Env) -> AdminClient:
    _, keys = make_org_and_keys(env.srv.engine, "Globex")
    return AdminClient(env.srv.target, keys["all"])


# -- DeleteWebhookConfig ----------------------------------------------------------


@pytest.mark.parametrize("env", [SLOW_RETRY], indirect=True)
def test_delete_cancels_pending_deliveries_keeps_the_log_and_frees_the_quota(env: Env) -> None:
    env.rx.program("/down", Reply(503))
    config, _ = env.config("/down")
    keep, _ = env.config("/up")
    with pytest.raises(FailedPreconditionError):  # the quota of 2 is full
        env.config("/third")
    for i in range(3):
        env.publish(id=f"evt_{i}")
    env.wait_logs(3, config_id=config.id, outcome="retry_scheduled")
    env.rx.wait_for(3, "/up")

    response = env.admin.delete_webhook_config(config.id)
    assert response.cancelled_deliveries == 3

    logs = env.logs(config_id=config.id)
    cancelled = [entry for entry in logs if entry.outcome == DeliveryOutcome.CANCELLED]
    assert sorted(entry.event_id for entry in cancelled) == ["evt_0", "evt_1", "evt_2"]
    for entry in cancelled:
        assert entry.attempt == 2 and entry.response_status_code == 0
        assert entry.error.startswith("configuration deleted")
    # the earlier attempts stay in the log
    assert sum(entry.outcome == DeliveryOutcome.RETRY_SCHEDULED for entry in logs) == 3
    assert len(env.logs(outcome="cancelled")) == 3

    # gone from the API, not from the log; the quota has room again
    assert [c.id for c in env.admin.list_webhook_configs()] == [keep.id]
    env.config("/third")
    with pytest.raises(FailedPreconditionError, match="cancelled"):
        env.admin.retry_delivery(cancelled[0].delivery_id)
    with pytest.raises(NotFoundError):
        env.admin.put_webhook_config(id=config.id, url=env.rx.url("/down"), event_types=["*"])
    with pytest.raises(NotFoundError):
        env.admin.send_test_event(config.id)
    with pytest.raises(NotFoundError):
        env.admin.delete_webhook_config(config.id)  # a second delete

    # new events are not queued for it
    assert env.publish(id="evt_after").deliveries == 2  # keep + third
    env.rx.wait_for(1, "/third")
    env.settled()
    assert env.rx.count("/down") == 3

    # its secret is erased
    with env.srv.engine.connect() as conn:
        secret = conn.execute(
            sa.text("SELECT secret FROM webhook_configs WHERE id = :id"), {"id": config.id}
        ).scalar()
    assert secret == ""


def test_delete_of_another_organisations_config_is_not_found(env: Env) -> None:
    config, _ = env.config("/mine")
    with other_org_admin(env) as other:
        with pytest.raises(NotFoundError):
            other.delete_webhook_config(config.id)
        with pytest.raises(NotFoundError):
            other.delete_webhook_config("whc_doesnotexist")
        with pytest.raises(InvalidArgumentError) as err:
            other.delete_webhook_config("")
        assert err.value.field_violations[0].field == "config_id"
    assert [c.id for c in env.admin.list_webhook_configs()] == [config.id]


def test_an_attempt_in_flight_is_logged_and_not_retried(env: Env) -> None:
    env.rx.program("/slow", Reply(500, delay=0.8), Reply(200))
    config, _ = env.config("/slow")
    env.publish(id="evt_inflight")
    env.rx.wait_for(1, "/slow")
    assert env.admin.delete_webhook_config(config.id).cancelled_deliveries == 1
    [entry] = env.wait_logs(1, config_id=config.id)
    assert entry.outcome == DeliveryOutcome.RETRY_SCHEDULED and entry.response_status_code == 500
    env.settled()  # cancelled: nothing pending, so no retry can come
    assert env.rx.count("/slow") == 1
    with pytest.raises(FailedPreconditionError, match="cancelled"):
        env.admin.retry_delivery(entry.delivery_id)


def test_retention_prunes_a_deleted_configs_log_and_then_the_config(env: Env) -> None:
    env.rx.program("/old", Reply(400))
    config, _ = env.config("/old")
    env.publish(id="evt_old")
    env.wait_logs(1, config_id=config.id, outcome="failed")
    env.admin.delete_webhook_config(config.id)
    later = utcnow() + timedelta(days=2)

    def rows() -> tuple[int, int]:
        with env.srv.engine.connect() as conn:
            configs = conn.execute(
                sa.text("SELECT count(*) FROM webhook_configs WHERE id = :id"), {"id": config.id}
            ).scalar_one()
            attempts = conn.execute(
                sa.text("SELECT count(*) FROM delivery_attempts WHERE config_id = :id"),
                {"id": config.id},
            ).scalar_one()
        return int(configs), int(attempts)

    assert rows() == (1, 1)  # kept for its log
    retention.prune(env.srv.engine, env.srv.settings, now=later, older_than_days=1)
    assert rows() == (0, 0)
    assert env.logs(config_id=config.id) == []


# -- per-endpoint headers -----------------------------------------------------------


def test_custom_headers_are_sent_on_every_attempt_and_listed_by_name_only(env: Env) -> None:
    env.rx.program("/auth", Reply(500), Reply(500), Reply(200))
    created = env.admin.put_webhook_config(
        url=env.rx.url("/auth"),
        event_types=["*"],
        headers={"Authorization": "Bearer rx-token-1", "X-Tenant": "acme"},
    )
    assert list(created.config.header_names) == ["authorization", "x-tenant"]
    assert "rx-token-1" not in str(created)
    env.publish(id="evt_headers")
    got = env.rx.wait_for(3, "/auth")
    for request in got:
        assert request.headers["authorization"] == "Bearer rx-token-1"
        assert request.headers["x-tenant"] == "acme"
        assert request.headers["webhook-id"] == "evt_headers"
    [listed] = env.admin.list_webhook_configs()
    assert list(listed.header_names) == ["authorization", "x-tenant"]
    assert "rx-token-1" not in str(listed)

    # an update without headers keeps them; the test event sends them too
    env.admin.put_webhook_config(id=created.config.id, url=env.rx.url("/auth"), event_types=["*"])
    env.admin.send_test_event(created.config.id)
    assert env.rx.wait_for(4, "/auth")[3].headers["authorization"] == "Bearer rx-token-1"
    # a new set replaces the old one; clear_headers removes them
    updated = env.admin.put_webhook_config(
        id=created.config.id,
        url=env.rx.url("/auth"),
        event_types=["*"],
        headers={"X-Other": "1"},
    )
    assert list(updated.config.header_names) == ["x-other"]
    cleared = env.admin.put_webhook_config(
        id=created.config.id, url=env.rx.url("/auth"), event_types=["*"], clear_headers=True
    )
    assert list(cleared.config.header_names) == []
    env.admin.send_test_event(created.config.id)
    last = env.rx.wait_for(5, "/auth")[4]
    assert "authorization" not in last.headers and "x-other" not in last.headers


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"webhook-id": "x"}, "headers['webhook-id']"),
        ({"Webhook-Signature": "x"}, "headers['Webhook-Signature']"),
        ({"Host": "evil.example"}, "headers['Host']"),
        ({"content-length": "1"}, "headers['content-length']"),
        ({"content-type": "text/plain"}, "headers['content-type']"),
        ({"user-agent": "x"}, "headers['user-agent']"),
        ({"Transfer-Encoding": "chunked"}, "headers['Transfer-Encoding']"),
        ({"connection": "close"}, "headers['connection']"),
        ({"bad name": "x"}, "headers['bad name']"),
        ({"x-ok": "line\r\nx-injected: 1"}, "headers['x-ok']"),
        ({"x-ok": ""}, "headers['x-ok']"),
        ({f"x-h{i}": "v" for i in range(21)}, "headers"),
        ({"X-A": "1", "x-a": "2"}, "headers['x-a']"),
    ],
)
def test_forbidden_or_malformed_headers_are_field_violations(
    env: Env, headers: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        env.admin.put_webhook_config(url=env.rx.url("/h"), event_types=["*"], headers=headers)
    assert field in [v.field for v in err.value.field_violations]
    assert list(env.admin.list_webhook_configs()) == []


@pytest.mark.parametrize("env", [{**FAST, "secret_key": SECRET_KEY}], indirect=True)
def test_headers_are_sealed_at_rest_with_the_secret_key(env: Env) -> None:
    created = env.admin.put_webhook_config(
        url=env.rx.url("/sealed"), event_types=["*"], headers={"authorization": "Bearer s3cr3t"}
    )
    with env.srv.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT headers FROM webhook_configs WHERE id = :id"),
            {"id": created.config.id},
        ).scalar()
    assert isinstance(stored, str)
    assert stored.startswith("enc:v1:") and "s3cr3t" not in stored
    env.publish()
    assert env.rx.wait_for(1, "/sealed")[0].headers["authorization"] == "Bearer s3cr3t"


# -- REST through the gateway ------------------------------------------------------


@pytest.fixture(scope="module")
def rest_env(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Env, str]]:
    with rest_delivery_env(sqlite_template, tmp_path_factory, "lifecycle-db", SLOW_RETRY) as pair:
        yield pair


@pytest.fixture
def rest(rest_env: tuple[Env, str]) -> Iterator[httpx.Client]:
    env, base_url = rest_env
    headers = {"authorization": f"Bearer {env.keys['all']}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=20) as client:
        yield client


def error(resp: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert set(body) == {"code", "message", "details"} and body["code"] == code, body
    return body


@pytest.mark.gateway
def test_rest_delete_and_headers(rest_env: tuple[Env, str], rest: httpx.Client) -> None:
    env, _ = rest_env
    env.rx.program("/rest-down", Reply(500))
    resp = rest.put(
        "/webhooks/configs",
        json={
            "url": env.rx.url("/rest-down"),
            "event_types": ["*"],
            "headers": {"authorization": "Bearer rest-token"},
        },
    )
    assert resp.status_code == 200, resp.text
    config = resp.json()["config"]
    assert config["header_names"] == ["authorization"] and "rest-token" not in resp.text
    env.publish()
    assert env.rx.wait_for(1, "/rest-down")[0].headers["authorization"] == "Bearer rest-token"
    env.wait_logs(1, config_id=config["id"], outcome="retry_scheduled")

    resp = rest.delete(f"/webhooks/configs/{config['id']}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"cancelled_deliveries": 1}
    logs = rest.get("/webhooks/logs", params={"config_id": config["id"]}).json()["logs"]
    assert [entry["outcome"] for entry in logs] == ["OUTCOME_CANCELLED", "OUTCOME_RETRY_SCHEDULED"]
    error(rest.delete(f"/webhooks/configs/{config['id']}"), 404, 5)
    assert rest.get("/webhooks/configs").json()["configs"] == []
    # the custom methods on the same prefix still route (no 405 from the DELETE path)
    error(rest.post(f"/webhooks/configs/{config['id']}:test", json={}), 404, 5)
    resp = rest.request("PATCH", f"/webhooks/configs/{config['id']}")
    assert resp.status_code == 405 and resp.headers["allow"] == "DELETE"

    bad = rest.put(
        "/webhooks/configs",
        json={"url": env.rx.url("/x"), "event_types": ["*"], "headers": {"host": "a"}},
    )
    [detail] = error(bad, 400, 3)["details"]
    assert detail["field_violations"][0]["field"] == "headers['host']"


@pytest.mark.gateway
def test_rest_operational_webhook_and_a_revoked_key(
    rest_env: tuple[Env, str], rest: httpx.Client
) -> None:
    env, base_url = rest_env
    env.rx.program("/rest-gone", Reply(410))
    resp = rest.put(
        "/webhooks/configs", json={"url": env.rx.url("/rest-ops"), "event_types": ["webhook.*"]}
    )
    assert resp.status_code == 200, resp.text
    ops_secret = resp.json()["secret"]
    gone = rest.put(
        "/webhooks/configs", json={"url": env.rx.url("/rest-gone"), "event_types": ["reward.*"]}
    ).json()["config"]
    env.publish()
    types = [json.loads(r.body)["type"] for r in env.rx.wait_for(2, "/rest-ops")]
    assert sorted(types) == ["webhook.delivery_failed", "webhook.endpoint_disabled"]
    disabled = next(
        r for r in env.rx.requests("/rest-ops") if b"webhook.endpoint_disabled" in r.body
    )
    data = Webhook(ops_secret).verify(disabled.body, disabled.headers)["data"]
    assert data["config_id"] == gone["id"] and data["reason"] == "ENDPOINT_DISABLED_REASON_GONE"
    env.wait_logs(1, event_type="webhook.endpoint_disabled")  # recorded after the receipt
    logs = rest.get("/webhooks/logs", params={"event_type": "webhook.endpoint_disabled"}).json()[
        "logs"
    ]
    assert len(logs) == 1 and logs[0]["outcome"] == "OUTCOME_DELIVERED"

    # a key revoked from the CLI is refused through the gateway within a second
    key = keys.create_key(env.srv.engine, env.org_id, ["webhooks:read"])[1]
    with httpx.Client(
        base_url=base_url, headers={"authorization": f"Bearer {key}"}, timeout=10
    ) as client:
        assert client.get("/webhooks/configs").status_code == 200
        out = io.StringIO()
        with contextlib.redirect_stderr(out):
            assert (
                cli.main(["keys", "revoke", key, "--database-url", env.srv.settings.database_url])
                == 0
            )
        eventually(
            lambda: client.get("/webhooks/configs").status_code == 401,
            1.0,
            "the gateway to refuse the revoked key (within a second)",
        )
