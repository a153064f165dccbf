"""Portal sessions: dashboard tokens of one organisation, over gRPC and REST.

One API server (with a wall clock the tests move) and one real Envoy serve the
module; each test makes its own organisations. What is under test is what an
admin or a host platform would notice: the link opens the dashboard for the
right organisation only, the token stops at its expiry or when revoked (with
a message saying which), and a session never gets more than its creator.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.envoy import running_gateway
from tests.support.server import RunningServer, make_key, make_org, running_server
from webhooks_client import (
    AdminClient,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from webhooks_service.core import credentials, keys, portal
from webhooks_service.errors import PermissionDenied, Unauthenticated
from webhooks_service.gateway import EnvoyProcess
from webhooks_service.storage.models import PortalSession

pytestmark = [pytest.mark.timeout(120)]

URL = "https://hooks.example.com/in"
READ, WRITE = keys.SCOPE_WEBHOOKS_READ, keys.SCOPE_WEBHOOKS_WRITE


class Clock:
    """A wall clock the tests move."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def api(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory, clock: Clock
) -> Iterator[RunningServer]:
    path = tmp_path_factory.mktemp("portal-db") / "webhooks.db"
    shutil.copyfile(sqlite_template, path)
    with running_server(
        f"sqlite:///{path}", {"portal_session_ttl": 600.0}, wall_clock=clock
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def gateway(api: RunningServer) -> Iterator[EnvoyProcess]:
    with running_gateway([api.target]) as gw:
        yield gw


@pytest.fixture
def rest(gateway: EnvoyProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        yield client


def fragment_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).fragment).items()}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def org_with_config(api: RunningServer, name: str) -> tuple[str, str, str]:
    """(org id, read+write key, id of one config of that organisation)."""
    org = make_org(api.engine, name)
    key = make_key(api.engine, org, READ, WRITE)
    with AdminClient(api.target, key) as admin:
        config_id = admin.put_webhook_config(url=URL, event_types=["*"], description=name).config.id
    return org, key, config_id


# -- gRPC ---------------------------------------------------------------------


def test_session_sees_its_organisation_only(api: RunningServer, clock: Clock) -> None:
    org, key, mine = org_with_config(api, "Acme")
    _, _, theirs = org_with_config(api, "Other")
    with AdminClient(api.target, key) as admin:
        session = admin.create_portal_session()
    assert session.organisation_id == org
    assert session.scopes == (READ, WRITE)
    assert session.token.startswith("wpt_") and session.session_id.startswith("wps_")
    base, _ = session.url.split("#")
    assert base.endswith("/dashboard/")
    assert fragment_of(session.url) == {
        "token": session.token,
        "expires_at": session.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scopes": f"{READ} {WRITE}",
    }
    # the operator's default lifetime (600 s here)
    assert session.expires_at == clock.now + timedelta(seconds=600)
    with AdminClient(api.target, session.token) as dashboard:
        assert [c.id for c in dashboard.list_webhook_configs()] == [mine]
        with pytest.raises(NotFoundError):
            dashboard.put_webhook_config(id=theirs, url=URL, event_types=["*"])
        with pytest.raises(NotFoundError):
            dashboard.send_test_event(theirs)


def test_expired_session_is_unauthenticated_with_a_clear_message(
    api: RunningServer, clock: Clock
) -> None:
    _, key, _ = org_with_config(api, "Acme")
    with AdminClient(api.target, key) as admin:
        session = admin.create_portal_session(ttl_seconds=120)
    with AdminClient(api.target, session.token) as dashboard:
        dashboard.list_webhook_configs()  # works, and is now in the key cache
        clock.advance(119)
        dashboard.list_webhook_configs()
        clock.advance(1)
        with pytest.raises(UnauthenticatedError, match="portal session expired at"):
            dashboard.list_webhook_configs()
    # the key that minted it is unaffected
    with AdminClient(api.target, key) as admin:
        admin.list_webhook_configs()


def test_revoked_session_is_unauthenticated(api: RunningServer) -> None:
    _, key, _ = org_with_config(api, "Acme")
    with AdminClient(api.target, key) as admin:
        session = admin.create_portal_session()
        other = admin.create_portal_session()
        assert admin.revoke_portal_session(session.session_id) is True
        assert admin.revoke_portal_session(session.session_id) is False  # already ended
    with (
        AdminClient(api.target, session.token) as dashboard,
        pytest.raises(UnauthenticatedError, match="portal session revoked"),
    ):
        dashboard.list_webhook_configs()
    with AdminClient(api.target, other.token) as dashboard:
        dashboard.list_webhook_configs()  # revoking one leaves the others alone


def test_another_organisations_session_cannot_be_revoked(api: RunningServer) -> None:
    _, key_a, _ = org_with_config(api, "Acme")
    _, key_b, _ = org_with_config(api, "Other")
    with AdminClient(api.target, key_a) as admin:
        session = admin.create_portal_session()
    with AdminClient(api.target, key_b) as other, pytest.raises(NotFoundError):
        other.revoke_portal_session(session.session_id)
    with AdminClient(api.target, session.token) as dashboard:
        dashboard.list_webhook_configs()


def test_scope_ceiling(api: RunningServer) -> None:
    org, key, config_id = org_with_config(api, "Acme")
    write_only = make_key(api.engine, org, WRITE)
    read_only = make_key(api.engine, org, READ)
    with AdminClient(api.target, read_only) as admin, pytest.raises(PermissionDeniedError):
        admin.create_portal_session()  # needs webhooks:write
    with AdminClient(api.target, write_only) as admin:
        with pytest.raises(PermissionDeniedError, match="lacks webhooks:read"):
            admin.create_portal_session(scopes=[READ, WRITE])
        assert admin.create_portal_session().scopes == (WRITE,)
    with AdminClient(api.target, key) as admin:
        with pytest.raises(InvalidArgumentError) as err:
            admin.create_portal_session(scopes=[keys.SCOPE_EVENTS_PUBLISH])
        assert [v.field for v in err.value.field_violations] == ["scopes"]
        reader = admin.create_portal_session(scopes=[READ])
    with AdminClient(api.target, reader.token) as dashboard:
        assert [c.id for c in dashboard.list_webhook_configs()] == [config_id]
        with pytest.raises(PermissionDeniedError, match="webhooks:write"):
            dashboard.put_webhook_config(url=URL, event_types=["*"])


def test_a_session_cannot_mint_another(api: RunningServer) -> None:
    _, key, _ = org_with_config(api, "Acme")
    with AdminClient(api.target, key) as admin:
        session = admin.create_portal_session()
    with (
        AdminClient(api.target, session.token) as dashboard,
        pytest.raises(PermissionDeniedError, match="cannot open further portal sessions"),
    ):
        dashboard.create_portal_session()


def test_organisation_binding_for_keys_and_platform_keys(api: RunningServer) -> None:
    org, key, config_id = org_with_config(api, "Acme")
    other, _, _ = org_with_config(api, "Other")
    with AdminClient(api.target, key) as admin, pytest.raises(PermissionDeniedError):
        admin.create_portal_session(organisation_id=other)
    publisher = make_key(api.engine, None)  # events:publish only
    with AdminClient(api.target, publisher) as platform, pytest.raises(PermissionDeniedError):
        platform.create_portal_session(organisation_id=org)
    _, platform_key = keys.create_platform_key(
        api.engine, "host platform", [keys.SCOPE_EVENTS_PUBLISH, READ, WRITE]
    )
    with AdminClient(api.target, platform_key) as platform:
        with pytest.raises(InvalidArgumentError) as err:
            platform.create_portal_session()
        assert [v.field for v in err.value.field_violations] == ["organisation_id"]
        with pytest.raises(NotFoundError):
            platform.create_portal_session(organisation_id="org_nope")
        with pytest.raises(PermissionDeniedError):
            platform.list_webhook_configs()  # a platform key administers nothing itself
        session = platform.create_portal_session(organisation_id=org, scopes=[READ])
    with AdminClient(api.target, session.token) as dashboard:
        assert [c.id for c in dashboard.list_webhook_configs()] == [config_id]


def test_lifetime_is_bounded(api: RunningServer) -> None:
    _, key, _ = org_with_config(api, "Acme")
    with AdminClient(api.target, key) as admin:
        for ttl in (59, 86401, -5):
            with pytest.raises(InvalidArgumentError) as err:
                admin.create_portal_session(ttl_seconds=ttl)
            assert [v.field for v in err.value.field_violations] == ["ttl_seconds"]


def test_token_is_stored_hashed(api: RunningServer) -> None:
    _, key, _ = org_with_config(api, "Acme")
    with AdminClient(api.target, key) as admin:
        session = admin.create_portal_session()
    secret = session.token.rsplit("_", 1)[1]
    with api.engine.connect() as conn:
        row = conn.execute(
            sa.select(PortalSession.__table__).where(PortalSession.id == session.session_id)
        ).one()
    assert secret not in " ".join(str(v) for v in row)
    forged = session.token[:-4] + ("AAAA" if not session.token.endswith("AAAA") else "BBBB")
    with (
        AdminClient(api.target, forged) as dashboard,
        pytest.raises(UnauthenticatedError, match="invalid portal session token"),
    ):
        dashboard.list_webhook_configs()


# -- REST through the gateway ---------------------------------------------------


def error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.mark.gateway
def test_rest_session_link_expiry_and_revocation(
    api: RunningServer, rest: httpx.Client, gateway: EnvoyProcess, clock: Clock
) -> None:
    _, key, mine = org_with_config(api, "Acme")
    _, _, theirs = org_with_config(api, "Other")
    resp = rest.post("/webhooks/portal-sessions", headers=bearer(key), json={"ttl_seconds": 300})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    # the link points back at the gateway the request came through
    assert body["url"].startswith(f"{gateway.base_url}/dashboard/#token={body['token']}&")
    assert fragment_of(body["url"])["token"] == body["token"]
    assert body["scopes"] == [READ, WRITE]
    token = body["token"]
    configs = rest.get("/webhooks/configs", headers=bearer(token)).json()["configs"]
    assert [c["id"] for c in configs] == [mine]
    put = rest.put(
        "/webhooks/configs",
        headers=bearer(token),
        json={"id": theirs, "url": URL, "event_types": ["*"]},
    )
    error(put, 404)
    clock.advance(301)
    expired = error(rest.get("/webhooks/configs", headers=bearer(token)), 401)
    assert expired["code"] == 16 and "portal session expired at" in expired["message"]

    second = rest.post("/webhooks/portal-sessions", headers=bearer(key), json={}).json()
    revoke = rest.post(
        f"/webhooks/portal-sessions/{second['session_id']}:revoke", headers=bearer(key), json={}
    )
    assert revoke.status_code == 200 and revoke.json() == {"revoked": True}
    revoked = error(rest.get("/webhooks/configs", headers=bearer(second["token"])), 401)
    assert "portal session revoked" in revoked["message"]


@pytest.mark.gateway
def test_rest_scope_ceiling_and_binding(api: RunningServer, rest: httpx.Client) -> None:
    org, _, _ = org_with_config(api, "Acme")
    other, _, _ = org_with_config(api, "Other")
    write_only = make_key(api.engine, org, WRITE)
    denied = error(
        rest.post(
            "/webhooks/portal-sessions",
            headers=bearer(write_only),
            json={"scopes": [READ, WRITE]},
        ),
        403,
    )
    assert "lacks webhooks:read" in denied["message"]
    error(
        rest.post(
            "/webhooks/portal-sessions", headers=bearer(write_only), json={"organisation_id": other}
        ),
        403,
    )
    bad = error(
        rest.post("/webhooks/portal-sessions", headers=bearer(write_only), json={"ttl_seconds": 5}),
        400,
    )
    fields = [v["field"] for d in bad["details"] for v in d.get("field_violations", [])]
    assert fields == ["ttl_seconds"]
    reader_key = make_key(api.engine, org, READ, WRITE)
    reader = rest.post(
        "/webhooks/portal-sessions", headers=bearer(reader_key), json={"scopes": [READ]}
    ).json()
    error(
        rest.put(
            "/webhooks/configs",
            headers=bearer(reader["token"]),
            json={"url": URL, "event_types": ["*"]},
        ),
        403,
    )
    # a session cannot mint another, over REST either
    error(rest.post("/webhooks/portal-sessions", headers=bearer(reader["token"]), json={}), 403)


# -- the use case on both databases ---------------------------------------------


def test_core_session_lifecycle(engine: Engine) -> None:
    from webhooks_service.core import orgs

    org = orgs.create_org(engine, "Acme").id
    key_row, _ = keys.create_key(engine, org, [READ, WRITE])
    caller = portal.Caller(key_row.id, org, key_row.scopes)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    made = portal.create_session(engine, caller, ttl_seconds=60, now=now)
    assert credentials.authenticate(engine, made.token, now).organisation_id == org
    with pytest.raises(Unauthenticated, match="expired"):
        credentials.authenticate(engine, made.token, now + timedelta(seconds=60))
    again = portal.create_session(engine, caller, now=now)
    assert again.row.expires_at == now + timedelta(seconds=portal.DEFAULT_TTL_SECONDS)
    assert portal.revoke_session(engine, caller, again.row.id, now=now)
    with pytest.raises(Unauthenticated, match="revoked"):
        credentials.authenticate(engine, again.token, now)
    session_caller = portal.Caller(made.row.id, org, made.row.scopes, is_portal=True)
    with pytest.raises(PermissionDenied):
        portal.create_session(engine, session_caller, now=now)
    # ended sessions are cleared out a week after they end, when the next is minted
    portal.create_session(engine, caller, now=now + timedelta(days=8))
    with pytest.raises(Unauthenticated, match="invalid"):
        credentials.authenticate(engine, made.token, now)


def test_grpc_status_codes_are_the_contracts(api: RunningServer) -> None:
    """No token at all, and a malformed one, are UNAUTHENTICATED too."""
    with (
        AdminClient(api.target, "wpt_garbage") as dashboard,
        pytest.raises(UnauthenticatedError) as err,
    ):
        dashboard.list_webhook_configs()
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_operator_cli_prints_a_working_link(
    api: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from webhooks_service.cli import main as cli_main

    org, _, config_id = org_with_config(api, "Acme")
    url = str(api.engine.url.render_as_string(hide_password=False))
    assert cli_main(["dashboard", "--org", org, "--database-url", url, "--read-only"]) == 0
    out, err = capsys.readouterr()
    link = out.strip()
    assert link.startswith("http://127.0.0.1:8080/dashboard/#token=wpt_")
    assert "webhooks:read" in err and "webhooks:write" not in err
    assert fragment_of(link)["scopes"] == READ
    with AdminClient(api.target, fragment_of(link)["token"]) as dashboard:
        assert [c.id for c in dashboard.list_webhook_configs()] == [config_id]
        with pytest.raises(PermissionDeniedError):
            dashboard.put_webhook_config(url=URL, event_types=["*"])
    assert cli_main(["dashboard", "--org", "org_nope", "--database-url", url]) == 2
    assert "does not exist" in capsys.readouterr().err
