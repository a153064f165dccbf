"""Tenant isolation battery: one organisation's keys never reach, change or
learn about another organisation's configurations, events, log entries or
page tokens — over every gRPC method and every REST path (through a real
Envoy).

Two organisations, Acme (the caller) and Globex (the victim), each with a
configuration, one delivered event and its log entry (real worker, real
receiver). Every probe uses Acme's keys with Globex's ids/tokens and checks:

- the answer is what a made-up id gives (NOT_FOUND / empty / INVALID_ARGUMENT),
  with the same message once the id itself is masked, so it reveals neither
  existence nor counts;
- no Globex id (organisation, config, event, attempt) appears in it;
- Globex's rows are unchanged afterwards.

Why each test fails without its guard: the config queries are scoped by
``organisation_id`` (storage/configs.py) — unscoped, Acme's list would show
Globex's config and the put would update it; the log query is scoped likewise
(storage/logs.py) — unscoped, the config_id/event_id filters return Globex's
entries; page tokens are bound to (organisation, filters) in
core/pagetokens.py — without the binding, Globex's token decodes for Acme
(a valid keyset position) and is accepted; publishing checks the key's
organisation (core/publishing.prepare) — without it, Acme's key stores an
event for Globex and Globex's receiver gets it; the event id dedupe is per
organisation — a global one would answer ``duplicate`` and reveal Globex's
event id.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa

from tests.support.envoy import running_gateway
from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Receiver, running_receiver
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks.v1 import admin_pb2, admin_pb2_grpc
from webhooks_client import (
    AdminClient,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PublisherClient,
)
from webhooks_client._client import make_publish_request
from webhooks_service.api.auth import METHOD_SCOPES
from webhooks_service.gateway import EnvoyProcess, find_gateway_dir

FAST = {"retry_schedule": (0.05,)}
MADE_UP_CONFIG = "whc_0000000000000000madeup"
MADE_UP_EVENT = "evt_madeup_0000"


@dataclass
class Tenant:
    org_id: str
    keys: dict[str, str]
    config_id: str
    event_id: str
    attempt_id: str
    delivery_id: str
    admin: AdminClient
    publisher: PublisherClient

    def close(self) -> None:
        self.admin.close()
        self.publisher.close()


def _tenant(srv: RunningServer, rx: Receiver, name: str) -> Tenant:
    org_id, keys = make_org_and_keys(srv.engine, name)
    admin = AdminClient(srv.target, keys["all"])
    publisher = PublisherClient(srv.target, keys["events:publish"])
    path = f"/{name}"
    config_id = admin.put_webhook_config(url=rx.url(path), event_types=["*"]).config.id
    # Two configs each, so that a page of size 1 has a next page token.
    admin.put_webhook_config(url=rx.url(path + "/2"), event_types=["user.*"])
    event_id = f"evt_{name.lower()}_1"
    publisher.publish_event(org_id, "reward.claimed", example("reward.claimed"), id=event_id)
    publisher.publish_event(org_id, "reward.claimed", example("reward.claimed"), id=event_id + "b")
    logs = eventually(
        lambda: logs if len(logs := list(admin.iter_delivery_logs())) >= 2 else None,
        15,
        "both deliveries to be logged",
    )
    first = logs[-1]
    return Tenant(org_id, keys, config_id, event_id, first.id, first.delivery_id, admin, publisher)


@dataclass
class World:
    srv: RunningServer
    rx: Receiver
    acme: Tenant
    globex: Tenant

    def secrets_of_globex(self) -> list[str]:
        g = self.globex
        return [g.org_id, g.config_id, g.event_id, g.attempt_id, g.delivery_id, "Globex"]

    def assert_reveals_nothing(self, text: str) -> None:
        for value in self.secrets_of_globex():
            assert value not in text, f"{value!r} leaked in {text!r}"

    def globex_state(self) -> list[Any]:
        """Globex's configurations, deliveries and attempts, as stored."""
        queries = (
            "SELECT id, url, event_types, enabled, description, secret, previous_secret, "
            "updated_at FROM webhook_configs WHERE organisation_id = :o ORDER BY id",
            "SELECT id, status, attempts, next_attempt_at FROM deliveries "
            "WHERE organisation_id = :o ORDER BY id",
            "SELECT count(*) FROM delivery_attempts WHERE organisation_id = :o",
            "SELECT count(*) FROM events WHERE organisation_id = :o",
        )
        with self.srv.engine.connect() as conn:
            return [
                [tuple(r) for r in conn.execute(sa.text(q).bindparams(o=self.globex.org_id))]
                for q in queries
            ]


def _world(database_url: str) -> Iterator[World]:
    with running_receiver() as rx, running_server(database_url, FAST, worker=True) as srv:
        acme, globex = _tenant(srv, rx, "Acme"), _tenant(srv, rx, "Globex")
        try:
            yield World(srv, rx, acme, globex)
        finally:
            acme.close()
            globex.close()


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    yield from _world(database_url)


def _masked(message: str, value: str) -> str:
    return message.replace(value, "<id>")


# -- gRPC ------------------------------------------------------------------------


EXPLICIT = {
    "/webhooks.v1.WebhookAdmin/ListWebhookConfigs",
    "/webhooks.v1.WebhookAdmin/PutWebhookConfig",
    "/webhooks.v1.WebhookAdmin/ListDeliveryLogs",
    "/webhooks.v1.WebhookAdmin/ListEventTypes",
    "/webhooks.v1.EventPublisher/PublishEvent",
    "/webhooks.v1.EventPublisher/PublishEvents",
    "/webhooks.v1.WebhookAdmin/CreatePortalSession",
    "/webhooks.v1.WebhookAdmin/RevokePortalSession",
    "/webhooks.v1.WebhookAdmin/TestWebhookFilter",
}
ID_FIELDS = ("config_id", "delivery_id", "event_id")
# Methods that read nothing of any organisation (the event catalog).
SAME_FOR_EVERY_ORGANISATION = {"/webhooks.v1.WebhookAdmin/ListEventTypes"}


def _id_methods() -> list[Any]:
    """Every other WebhookAdmin method that takes a config or delivery id
    (retry, replay, test event, rotation, ...): probed generically below."""
    service = admin_pb2.DESCRIPTOR.services_by_name["WebhookAdmin"]
    return [
        m
        for m in service.methods
        if f"/webhooks.v1.WebhookAdmin/{m.name}" not in EXPLICIT
        and any(f in m.input_type.fields_by_name for f in ID_FIELDS)
    ]


def test_event_types_are_the_platform_catalog_for_every_organisation(world: World) -> None:
    """ListEventTypes has nothing per organisation: both see the same catalog."""
    state = world.globex_state()
    assert world.acme.admin.list_event_types() == world.globex.admin.list_event_types()
    assert world.globex_state() == state


def test_a_filter_dry_run_sees_only_the_callers_events(world: World) -> None:
    """TestWebhookFilter runs over the caller's recent events only: a filter that
    accepts everything finds Acme's event and never Globex's (not even a count)."""
    state = world.globex_state()
    acme = world.acme.admin.test_webhook_filter("true", ["*"])
    globex = world.globex.admin.test_webhook_filter("true", ["*"])
    acme_ids = {m.event_id for m in acme.matches}
    assert world.acme.event_id in acme_ids
    assert world.globex.event_id not in acme_ids
    assert acme.examined == len(acme_ids) and globex.examined == len(globex.matches)
    assert world.globex.event_id in {m.event_id for m in globex.matches}
    # the same filter naming Globex's event id matches nothing for Acme
    aimed = world.acme.admin.test_webhook_filter(f"event.id == '{world.globex.event_id}'", ["*"])
    assert aimed.matched == 0
    assert world.globex_state() == state


def test_every_protected_method_is_covered_here() -> None:
    """A new RPC must get an isolation probe in this module (explicit, or the
    generic one for methods that take a config or delivery id)."""
    generic = {f"/webhooks.v1.WebhookAdmin/{m.name}" for m in _id_methods()}
    uncovered = set(METHOD_SCOPES) - EXPLICIT - generic - SAME_FOR_EVERY_ORGANISATION
    assert not uncovered, f"no isolation probe for {sorted(uncovered)}"


@pytest.mark.parametrize("method", [m.name for m in _id_methods()] or ["(none)"])
def test_id_taking_methods_treat_another_orgs_ids_as_unknown(world: World, method: str) -> None:
    """Retry/replay/test/rotate with Globex's ids: NOT_FOUND, the same answer as
    made-up ids, and Globex's rows unchanged."""
    if method == "(none)":
        pytest.skip("no id-taking WebhookAdmin methods besides the explicit ones")
    desc = admin_pb2.DESCRIPTOR.services_by_name["WebhookAdmin"].methods_by_name[method]
    request_cls = getattr(admin_pb2, desc.input_type.name)
    response_cls = getattr(admin_pb2, desc.output_type.name)
    g = world.globex
    theirs = {"config_id": g.config_id, "delivery_id": g.delivery_id, "event_id": g.event_id}
    made_up = {
        "config_id": MADE_UP_CONFIG,
        "delivery_id": "dlv_000000003ade68b1",
        "event_id": MADE_UP_EVENT,
    }
    before = world.globex_state()
    answers = []
    with grpc.insecure_channel(world.srv.target) as channel:
        call = channel.unary_unary(
            f"/webhooks.v1.WebhookAdmin/{method}",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        for ids in (theirs, made_up):
            fields = {f: v for f, v in ids.items() if f in desc.input_type.fields_by_name}
            meta = (("authorization", f"Bearer {world.acme.keys['all']}"),)
            request = request_cls(**fields)
            if "since" in desc.input_type.fields_by_name:  # replay: a valid range
                request.since.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
            with pytest.raises(grpc.RpcError) as err:
                call(request, metadata=meta, timeout=30)
            text = err.value.details() or ""
            for value in ids.values():
                text = text.replace(value, "<id>")
            answers.append((err.value.code(), text))
    assert answers[0] == answers[1]
    assert answers[0][0] == grpc.StatusCode.NOT_FOUND, answers[0]
    world.assert_reveals_nothing(answers[0][1])
    assert world.globex_state() == before


def test_event_catalog_is_the_same_for_everyone(world: World) -> None:
    """The catalog is global: it carries nothing of any organisation."""
    acme = world.acme.admin.list_event_types()
    assert acme == world.globex.admin.list_event_types() and acme
    world.assert_reveals_nothing(str(acme))


def test_portal_sessions_stay_in_their_organisation(world: World) -> None:
    """Acme cannot open a session for Globex (the same answer as for a made-up
    organisation), Acme's session sees Acme only, and Acme cannot revoke
    Globex's session (NOT_FOUND, as for a made-up id)."""
    acme, globex = world.acme, world.globex
    with pytest.raises(PermissionDeniedError) as theirs:
        acme.admin.create_portal_session(organisation_id=globex.org_id)
    with pytest.raises(PermissionDeniedError) as made_up:
        acme.admin.create_portal_session(organisation_id="org_00000000000000madeup")
    assert _masked(theirs.value.message, globex.org_id) == _masked(
        made_up.value.message, "org_00000000000000madeup"
    )
    world.assert_reveals_nothing(str(theirs.value))

    mine = acme.admin.create_portal_session()
    with AdminClient(world.srv.target, mine.token) as dashboard:
        configs = dashboard.list_webhook_configs()
        assert acme.config_id in {c.id for c in configs} and len(configs) == 2
        logs = list(dashboard.iter_delivery_logs())
        assert len(logs) == 2
        assert list(dashboard.list_delivery_logs(config_id=globex.config_id).logs) == []
        with pytest.raises(NotFoundError):
            dashboard.send_test_event(globex.config_id)
        world.assert_reveals_nothing(str(configs) + str(logs))

    before = world.globex_state()
    theirs_session = globex.admin.create_portal_session()
    with pytest.raises(NotFoundError) as revoke_theirs:
        acme.admin.revoke_portal_session(theirs_session.session_id)
    with pytest.raises(NotFoundError) as revoke_made_up:
        acme.admin.revoke_portal_session("wps_00000000000000madeup")
    assert _masked(revoke_theirs.value.message, theirs_session.session_id) == _masked(
        revoke_made_up.value.message, "wps_00000000000000madeup"
    )
    with AdminClient(world.srv.target, theirs_session.token) as globex_dashboard:
        assert globex.config_id in {c.id for c in globex_dashboard.list_webhook_configs()}
    assert world.globex_state() == before


def test_list_configs_shows_only_the_callers(world: World) -> None:
    listed = world.acme.admin.list_webhook_configs()
    assert len(listed) == 2 and world.acme.config_id in {c.id for c in listed}
    world.assert_reveals_nothing(str(listed))


def test_put_with_another_orgs_config_id_is_not_found_and_changes_nothing(world: World) -> None:
    before = world.globex_state()
    url = world.rx.url("/stolen")
    with pytest.raises(NotFoundError) as theirs:
        world.acme.admin.put_webhook_config(
            id=world.globex.config_id, url=url, event_types=["*"], enabled=False
        )
    with pytest.raises(NotFoundError) as made_up:
        world.acme.admin.put_webhook_config(id=MADE_UP_CONFIG, url=url, event_types=["*"])
    assert _masked(theirs.value.message, world.globex.config_id) == _masked(
        made_up.value.message, MADE_UP_CONFIG
    )
    assert world.globex_state() == before
    text = _masked(str(theirs.value), world.globex.config_id)
    world.assert_reveals_nothing(text)


def test_log_filters_with_another_orgs_ids_find_nothing(world: World) -> None:
    acme, globex = world.acme.admin, world.globex
    for filters in (
        {"config_id": globex.config_id},
        {"event_id": globex.event_id},
        {"config_id": globex.config_id, "event_id": globex.event_id},
        {"event_type": "reward.claimed", "event_id": globex.event_id},
    ):
        page = acme.list_delivery_logs(**filters)  # type: ignore[arg-type]
        assert list(page.logs) == [] and page.next_page_token == "", filters
    # A made-up id gives the same (empty) answer; the caller's own ids work.
    assert list(acme.list_delivery_logs(config_id=MADE_UP_CONFIG).logs) == []
    assert len(acme.list_delivery_logs(event_id=world.acme.event_id).logs) == 1
    everything = list(acme.iter_delivery_logs())
    assert len(everything) == 2
    world.assert_reveals_nothing(str(everything))


def test_another_orgs_page_tokens_are_invalid_argument(world: World) -> None:
    g_admin = world.globex.admin
    log_token = g_admin.list_delivery_logs(page_size=1).next_page_token
    g_meta = (("authorization", f"Bearer {world.globex.keys['all']}"),)
    a_meta = (("authorization", f"Bearer {world.acme.keys['all']}"),)
    with grpc.insecure_channel(world.srv.target) as channel:
        stub = admin_pb2_grpc.WebhookAdminStub(channel)
        config_token = stub.ListWebhookConfigs(
            admin_pb2.ListWebhookConfigsRequest(page_size=1), metadata=g_meta, timeout=10
        ).next_page_token
        assert log_token and config_token
        with pytest.raises(grpc.RpcError) as err:
            stub.ListWebhookConfigs(
                admin_pb2.ListWebhookConfigsRequest(page_size=1, page_token=config_token),
                metadata=a_meta,
                timeout=10,
            )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    world.assert_reveals_nothing(str(err.value.details()))
    with pytest.raises(InvalidArgumentError) as logs_err:
        world.acme.admin.list_delivery_logs(page_size=1, page_token=log_token)
    assert [v.field for v in logs_err.value.field_violations] == ["page_token"]
    world.assert_reveals_nothing(str(logs_err.value))


def test_page_tokens_are_bound_to_the_filters(world: World) -> None:
    admin = world.acme.admin
    token = admin.list_delivery_logs(page_size=1).next_page_token
    assert token
    with pytest.raises(InvalidArgumentError):
        admin.list_delivery_logs(page_size=1, page_token=token, event_type="reward.claimed")
    with pytest.raises(InvalidArgumentError):
        admin.list_delivery_logs(page_size=1, page_token=token, config_id=world.acme.config_id)
    # Same filters: accepted (a different page size is fine).
    assert len(admin.list_delivery_logs(page_size=5, page_token=token).logs) == 1


def test_publishing_for_another_org_is_permission_denied(world: World) -> None:
    acme = world.acme.publisher
    with pytest.raises(PermissionDeniedError) as theirs:
        acme.publish_event(
            world.globex.org_id, "reward.claimed", example("reward.claimed"), id="evt_attack"
        )
    with pytest.raises(PermissionDeniedError) as made_up:
        acme.publish_event(
            "org_doesnotexist", "reward.claimed", example("reward.claimed"), id="evt_attack"
        )
    assert _masked(theirs.value.message, world.globex.org_id) == _masked(
        made_up.value.message, "org_doesnotexist"
    )
    with pytest.raises(PermissionDeniedError):
        acme.publish_events(
            [
                make_publish_request(
                    world.acme.org_id, "reward.claimed", example("reward.claimed")
                ),
                make_publish_request(
                    world.globex.org_id, "reward.claimed", example("reward.claimed")
                ),
            ]
        )
    # Nothing was stored for Globex (the refusals happen before any write).
    assert len(list(world.globex.admin.iter_delivery_logs())) == 2
    assert world.rx.count("/Globex") == 2


def test_event_ids_are_per_organisation(world: World) -> None:
    """Publishing Globex's event id as Acme is a new event, not a ``duplicate``
    (that answer would confirm Globex's id exists)."""
    result = world.acme.publisher.publish_event(
        world.acme.org_id, "reward.claimed", example("reward.claimed"), id=world.globex.event_id
    )
    assert result.duplicate is False and result.deliveries == 1


# -- REST through Envoy -------------------------------------------------------------


@pytest.fixture(scope="module")
def rest_world(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    path = tmp_path_factory.mktemp("isolation-db") / "webhooks.db"
    shutil.copyfile(sqlite_template, path)
    for w in _world(f"sqlite:///{path}"):
        with running_gateway([w.srv.target]) as gw:
            yield w, gw


def _get(gw: EnvoyProcess, key: str, path: str, **params: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"}
    return httpx.get(f"{gw.base_url}{path}", params=params, headers=headers, timeout=10)


@pytest.mark.gateway
def test_rest_paths_reveal_nothing(rest_world: tuple[World, EnvoyProcess]) -> None:
    world, gw = rest_world
    key, g = world.acme.keys["all"], world.globex
    configs = _get(gw, key, "/webhooks/configs")
    assert configs.status_code == 200 and len(configs.json()["configs"]) == 2
    world.assert_reveals_nothing(configs.text)
    for params in ({"config_id": g.config_id}, {"event_id": g.event_id}):
        logs = _get(gw, key, "/webhooks/logs", **params)
        assert logs.status_code == 200 and logs.json().get("logs", []) == [], logs.text
    before = world.globex_state()
    put = httpx.put(
        f"{gw.base_url}/webhooks/configs",
        json={"id": g.config_id, "url": world.rx.url("/x"), "event_types": ["*"]},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert put.status_code == 404 and put.json()["code"] == 5, put.text
    world.assert_reveals_nothing(put.text.replace(g.config_id, "<id>"))
    assert world.globex_state() == before
    g_token = _get(gw, g.keys["all"], "/webhooks/logs", page_size=1).json()["next_page_token"]
    g_ctoken = _get(gw, g.keys["all"], "/webhooks/configs", page_size=1).json()["next_page_token"]
    for path, token in (("/webhooks/logs", g_token), ("/webhooks/configs", g_ctoken)):
        stolen = _get(gw, key, path, page_size=1, page_token=token)
        assert stolen.status_code == 400 and stolen.json()["code"] == 3, stolen.text
        world.assert_reveals_nothing(stolen.text)


def _id_paths() -> list[str]:
    """REST operations ("METHOD path", from the committed OpenAPI description) that
    take an id."""
    spec = json.loads((find_gateway_dir() / "openapi.json").read_text())
    return sorted(
        f"{method.upper()} {p}"
        for p, operations in spec["paths"].items()
        if "{config_id}" in p or "{delivery_id}" in p or "{event_id}" in p
        for method in operations
    )


@pytest.mark.gateway
@pytest.mark.parametrize("path", _id_paths() or ["(none)"])
def test_rest_id_paths_treat_another_orgs_ids_as_unknown(
    rest_world: tuple[World, EnvoyProcess], path: str
) -> None:
    if path == "(none)":
        pytest.skip("no id-taking REST paths")
    method, path = path.split(" ", 1)
    world, gw = rest_world
    g = world.globex
    before = world.globex_state()
    answers = []
    for config_id, delivery_id, event_id in (
        (g.config_id, g.delivery_id, g.event_id),
        (MADE_UP_CONFIG, "dlv_000000003ade68b1", MADE_UP_EVENT),
    ):
        url = gw.base_url + path.format(
            config_id=config_id, delivery_id=delivery_id, event_id=event_id
        )
        since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        resp = httpx.request(
            method,
            url,
            json=({"since": since} if path.endswith(":replay") else {})
            if method == "POST"
            else None,
            headers={"authorization": f"Bearer {world.acme.keys['all']}"},
            timeout=30,
        )
        text = resp.text
        for value in (config_id, delivery_id, event_id):
            text = text.replace(value, "<id>")
        answers.append((resp.status_code, text))
    assert answers[0] == answers[1]
    assert answers[0][0] == 404, answers[0]
    world.assert_reveals_nothing(answers[0][1])
    assert world.globex_state() == before
