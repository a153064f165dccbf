"""Payload filters (issue 21): CEL on a configuration, checked at PUT, applied at fan-out,
tried by the dry run (TestWebhookFilter).

Over gRPC (the typed client) on SQLite and PostgreSQL against the real server
with its worker and a real HTTP receiver; then REST through the real Envoy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from tests.support.clients import ClientFactory, admin_client, client_kind  # noqa: F401
from tests.support.delivery_env import DeliveryEnv as Env
from tests.support.delivery_env import delivery_env, rest_delivery_env
from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Received, Reply
from webhooks_client import FailedPreconditionError, InvalidArgumentError, make_publish_request
from webhooks_service.core import filter_cache, filters
from webhooks_service.observability.metrics import Metrics
from webhooks_service.storage.models import utcnow

FAST = {"retry_schedule": (0.05, 0.05)}
POINTS = "event.data.points > 100"


@pytest.fixture
def env(database_url: str) -> Iterator[Env]:
    with delivery_env(database_url, FAST) as e:
        yield e


def ident(received: Received) -> str:
    event_id: str = json.loads(received.body)["id"]
    return event_id


def counted(config_id: str) -> tuple[int, int]:
    """(skipped, errors) of the configuration in this process."""
    for cid, skipped, errors in filters.counts():
        if cid == config_id:
            return skipped, errors
    return 0, 0


def claim(env: Env, event_id: str, points: int, type_: str = "reward.claimed") -> int:
    return env.publisher.publish_event(
        env.org_id, type_, example(type_, points=str(points)), id=event_id
    ).deliveries


def test_a_filtered_config_receives_only_the_matching_events(env: Env) -> None:
    filtered = env.admin.put_webhook_config(
        url=env.rx.url("/big"), event_types=["reward.*"], filter=POINTS
    ).config
    everything, _ = env.config("/all", ["reward.claimed"])
    assert filtered.filter == POINTS
    assert [c.filter for c in env.admin.list_webhook_configs()] == [POINTS, ""]

    assert claim(env, "evt_small", 50) == 1  # only the unfiltered endpoint
    assert claim(env, "evt_big", 250) == 2
    assert claim(env, "evt_edge", 100) == 1
    assert claim(env, "evt_more", 101) == 2
    env.rx.wait_for(4, "/all")
    got = env.rx.wait_for(2, "/big")
    assert sorted(ident(r) for r in got) == ["evt_big", "evt_more"]
    # a filtered-out event creates no delivery and no attempt
    assert {e.event_id for e in env.wait_logs(2, config_id=filtered.id)} == {"evt_big", "evt_more"}
    env.wait_logs(4, config_id=everything.id)
    assert len(env.logs(config_id=filtered.id)) == 2
    assert counted(filtered.id) == (2, 0)

    # int64 as an integer, strings, timestamps and the envelope
    env.admin.put_webhook_config(
        id=filtered.id,
        url=filtered.url,
        event_types=["reward.claimed"],
        filter='event.data.community_id.startsWith("com_") && event.type == "reward.claimed"'
        ' && event.occurred_at > timestamp("2020-01-01T00:00:00Z") && event.id != "evt_no"',
    )
    env.publisher.publish_event(
        env.org_id, "reward.claimed", example(community_id="com_a"), id="evt_yes"
    )
    env.publisher.publish_event(
        env.org_id, "reward.claimed", example(community_id="other"), id="evt_other"
    )
    env.publisher.publish_event(env.org_id, "reward.claimed", example(), id="evt_no")
    env.rx.wait_for(7, "/all")
    assert [ident(r) for r in env.rx.wait_for(3, "/big")][2:] == ["evt_yes"]

    # an empty filter removes it; an absent one keeps it
    kept = env.admin.put_webhook_config(
        id=filtered.id, url=filtered.url, event_types=["reward.claimed"]
    ).config
    assert kept.filter.startswith("event.data.community_id")
    cleared = env.admin.put_webhook_config(
        id=filtered.id, url=filtered.url, event_types=["reward.claimed"], filter=""
    ).config
    assert cleared.filter == ""
    assert claim(env, "evt_after", 1) == 2


def refused(env: Env, expression: str, types: tuple[str, ...] = ("reward.claimed",)) -> str:
    with pytest.raises(InvalidArgumentError) as err:
        env.admin.put_webhook_config(
            url=env.rx.url("/x"), event_types=list(types), filter=expression
        )
    [violation] = err.value.field_violations
    assert violation.field == "filter"
    return violation.description


def test_invalid_filters_are_refused_naming_filter(env: Env) -> None:
    assert "Syntax error" in refused(env, "event.data.points >")
    assert refused(env, "event.data.pointz > 1").startswith(
        "line 1, column 11: undefined field 'pointz'"
    )
    assert "no matching overload for '_>_' applied to '(int, string)'" in refused(
        env, 'event.data.points > "100"'
    )
    assert "no matching overload" in refused(env, "event.data.claimed_at > 5")
    assert refused(env, "x" * 1025) == "at most 1024 characters (got 1025)"
    assert "boolean" in refused(env, "event.data.points")
    assert refused(env, "(" * 40 + "true" + ")" * 40) == "nests deeper than 32 levels"
    assert "inside another" in refused(env, "[1, 2].all(x, [3].exists(y, y > x))")
    assert "5 comprehension macros" in refused(
        env, " && ".join(f"[{i}].exists(x, x > 0)" for i in range(5))
    )
    # a field that no subscribed type has: every type is named, with wildcards too
    why = refused(env, "event.data.points > 1", ("user.*",))
    assert why.startswith("type-checks against none of the subscribed types: user.")
    # a string literal may contain anything, macros included
    env.admin.put_webhook_config(
        url=env.rx.url("/ok"),
        event_types=["reward.claimed"],
        filter='event.data.user_id != "[1].all(x, [2].exists(y, true)) (((("',
    )
    # a kept filter must still fit new event types
    config = env.admin.put_webhook_config(
        url=env.rx.url("/y"), event_types=["reward.claimed"], filter=POINTS
    ).config
    with pytest.raises(InvalidArgumentError) as err:
        env.admin.put_webhook_config(id=config.id, url=config.url, event_types=["user.*"])
    assert err.value.field_violations[0].field == "filter"
    assert "no longer fits" in err.value.field_violations[0].description
    # nothing stored by the refused calls
    assert len(env.admin.list_webhook_configs()) == 2


def test_an_evaluation_error_neither_delivers_nor_loses_the_others(env: Env) -> None:
    config = env.admin.put_webhook_config(
        url=env.rx.url("/div"), event_types=["reward.claimed"], filter="100 / event.data.points > 1"
    ).config
    env.config("/all", ["reward.claimed"])
    result = env.publisher.publish_events(
        [
            make_publish_request(env.org_id, "reward.claimed", example(points=p), id=i)
            for i, p in [("evt_zero", "0"), ("evt_half", "50"), ("evt_low", "200")]
        ]
    )
    assert [r.deliveries for r in result] == [1, 2, 1]
    env.rx.wait_for(3, "/all")
    assert [ident(r) for r in env.rx.wait_for(1, "/div")] == ["evt_half"]
    assert counted(config.id) == (2, 1)
    scrape = generate_latest(Metrics(filter_counts=filters.counts).registry).decode()
    assert (
        f'webhooks_filter_events_total{{config_id="{config.id}",reason="not_matched"}} 1.0'
        in scrape
    )
    assert f'webhooks_filter_events_total{{config_id="{config.id}",reason="error"}} 1.0' in scrape


def test_the_dry_run_counts_what_delivery_did(env: Env) -> None:
    config = env.admin.put_webhook_config(
        url=env.rx.url("/big"), event_types=["reward.claimed"], filter=POINTS
    ).config
    for i, points in enumerate([10, 500, 150, 99, 101, 7]):
        claim(env, f"evt_{i}", points)
    env.publisher.publish_event(env.org_id, "user.profile_created", example("user.profile_created"))
    delivered = {ident(r) for r in env.rx.wait_for(3, "/big")}
    assert delivered == {e.event_id for e in env.wait_logs(3, config_id=config.id)}

    run = env.admin.test_webhook_filter(POINTS, ["reward.claimed"])
    assert (run.examined, run.matched, run.errors) == (6, 3, 0)
    assert [m.event_id for m in run.matches] == ["evt_4", "evt_2", "evt_1"]  # newest first
    assert {m.event_id for m in run.matches} == delivered
    assert all(m.event_type == "reward.claimed" and m.occurred_at for m in run.matches)
    assert run.example_matches is None

    limited = env.admin.test_webhook_filter(POINTS, ["reward.*"], limit=2)
    assert (limited.examined, limited.matched) == (2, 1)

    yes = env.admin.test_webhook_filter(
        POINTS, ["reward.claimed"], example_data=example(points="101")
    )
    assert yes.example_matches is True
    no = env.admin.test_webhook_filter(POINTS, ["reward.claimed"], example_data=example(points="1"))
    assert no.example_matches is False and no.example_error == ""
    err = env.admin.test_webhook_filter(
        "100 / event.data.points > 1", ["reward.claimed"], example_data=example(points="0")
    )
    assert err.example_matches is False and "run time" in err.example_error
    assert err.errors == 0 and err.matched == 2  # 100/10, 100/7 (100/99 is 1: integers)

    cases: list[tuple[dict[str, Any], str]] = [
        ({"filter": "event.data.pointz > 1", "event_types": ["reward.claimed"]}, "filter"),
        ({"filter": "", "event_types": ["reward.claimed"]}, "filter"),
        ({"filter": POINTS, "event_types": ["nope"]}, "event_types[0]"),
        ({"filter": POINTS, "event_types": ["reward.claimed"], "limit": 1001}, "limit"),
        (
            {"filter": POINTS, "event_types": ["reward.claimed"], "example_data": {"x": 1}},
            "example_data.x",
        ),
        (
            {
                "filter": POINTS,
                "event_types": ["reward.claimed"],
                "example_data": {},
                "example_type": "user.profile_created",
            },
            "example_type",
        ),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidArgumentError) as e:
            env.admin.test_webhook_filter(**kwargs)
        assert e.value.field_violations[0].field == field, kwargs


def test_retries_and_replays_follow_the_filter_as_it_is_now(env: Env) -> None:
    env.rx.program("/flaky", Reply(400))  # a final failure: no automatic retry
    config = env.admin.put_webhook_config(
        url=env.rx.url("/flaky"), event_types=["reward.claimed"]
    ).config
    claim(env, "evt_small", 50)
    claim(env, "evt_big", 250)
    failed = {e.event_id: e for e in env.wait_logs(2, config_id=config.id, outcome="failed")}
    env.admin.put_webhook_config(
        id=config.id, url=config.url, event_types=["reward.claimed"], filter=POINTS
    )
    env.rx.program("/flaky", Reply(200))
    with pytest.raises(FailedPreconditionError, match="filter does not accept event evt_small"):
        env.admin.retry_delivery(failed["evt_small"].delivery_id)
    since = utcnow() - timedelta(hours=1)
    assert env.admin.replay_deliveries(config.id, since=since) == 1  # evt_big only
    env.wait_logs(1, config_id=config.id, outcome="delivered")
    assert [ident(r) for r in env.rx.requests("/flaky")][2:] == ["evt_big"]
    assert env.admin.retry_delivery(failed["evt_big"].delivery_id).scheduled
    env.wait_logs(2, config_id=config.id, outcome="delivered")
    # the one left alone is still failed, and can be sent once the filter lets it through
    env.admin.put_webhook_config(
        id=config.id, url=config.url, event_types=["reward.claimed"], filter=""
    )
    assert env.admin.replay_deliveries(config.id, since=since) == 1
    eventually(lambda: "evt_small" in [ident(r) for r in env.rx.requests("/flaky")][2:])


def test_both_clients_put_and_try_a_filter(
    env: Env,
    admin_client: ClientFactory,  # noqa: F811
) -> None:
    claim(env, "evt_c1", 500)
    with admin_client(env.srv.target, env.keys["all"]) as client:
        config = client.put_webhook_config(
            url=env.rx.url("/c"), event_types=["reward.claimed"], filter=POINTS
        ).config
        assert config.filter == POINTS
        run = client.test_webhook_filter(POINTS, ["reward.claimed"], example_data=example())
        assert (run.examined, run.matched, run.example_matches) == (1, 1, True)
        assert [m.event_id for m in run.matches] == ["evt_c1"]


def test_the_dry_run_sees_only_the_callers_organisation(env: Env) -> None:
    from tests.support.server import make_org_and_keys
    from webhooks_client import AdminClient

    claim(env, "evt_mine", 500)
    _, keys = make_org_and_keys(env.srv.engine, "Globex")
    with AdminClient(env.srv.target, keys["all"]) as other:
        assert other.test_webhook_filter(POINTS, ["*"]).examined == 0
    assert env.admin.test_webhook_filter(POINTS, ["*"]).matched == 1


# -- REST through Envoy ---------------------------------------------------------------


@pytest.fixture(scope="module")
def rest_env(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Env, str]]:
    with rest_delivery_env(sqlite_template, tmp_path_factory, "filters-db", FAST) as pair:
        yield pair


@pytest.mark.gateway
def test_rest_filter_and_dry_run(rest_env: tuple[Env, str]) -> None:
    env, base_url = rest_env
    headers = {"authorization": f"Bearer {env.keys['all']}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=20) as rest:
        bad = rest.put(
            "/webhooks/configs",
            json={
                "url": env.rx.url("/r"),
                "event_types": ["reward.claimed"],
                "filter": "event.data.pointz > 1",
            },
        )
        assert bad.status_code == 400, bad.text
        body: dict[str, Any] = bad.json()
        [violation] = body["details"][0]["field_violations"]
        assert violation["field"] == "filter" and "pointz" in violation["description"]

        resp = rest.put(
            "/webhooks/configs",
            json={"url": env.rx.url("/r"), "event_types": ["reward.claimed"], "filter": POINTS},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["config"]["filter"] == POINTS
        claim(env, "evt_r1", 5)
        claim(env, "evt_r2", 500)
        assert [ident(r) for r in env.rx.wait_for(1, "/r")] == ["evt_r2"]

        run = rest.post(
            "/webhooks/filters:test",
            json={
                "filter": POINTS,
                "event_types": ["reward.claimed"],
                "example_data": example(points="7"),
            },
        )
        assert run.status_code == 200, run.text
        answer = run.json()
        assert answer["examined"] == 2 and answer["matched"] == 1
        assert [m["event_id"] for m in answer["matches"]] == ["evt_r2"]
        assert answer["example_matches"] is False
        eventually(lambda: env.rx.count("/r") == 1)

        refused_run = rest.post(
            "/webhooks/filters:test", json={"filter": "event.data >", "event_types": ["*"]}
        )
        assert refused_run.status_code == 400, refused_run.text
        assert refused_run.json()["details"][0]["field_violations"][0]["field"] == "filter"


# -- the fan-out's evaluation, without a database --------------------------------------


def view(points: str, event_id: str = "evt_1", type_: str = "reward.claimed") -> filters.EventView:
    body = json.dumps({"id": event_id, "type": type_, "data": example(type_, points=points)})
    return filters.EventView(event_id, type_, utcnow(), body, body=True)


def test_one_failing_filter_among_many_leaves_the_others_their_answer() -> None:
    members = [(f"whc_m{i}", f"event.data.points > {i}") for i in range(70)]
    members[40] = ("whc_div", "100 / event.data.points > 1")  # divides by zero below
    members[41] = ("whc_comment", "event.data.points > 5 // trailing comment")
    members[42] = ("whc_other", 'event.data.points_spent > 0 || event.type == "x"')  # no such field
    matcher = filters.Matcher()
    rejected = matcher.rejected(view("0"), members)
    assert rejected == {cid for cid, _ in members}  # 0 > i is never true; the division errs
    rejected = matcher.rejected(view("50"), members)
    assert rejected == {f"whc_m{i}" for i in range(50, 70)} | {"whc_other"}
    matcher.flush()
    assert counted("whc_div") == (1, 1)  # skipped once (the error), matched at 50
    assert counted("whc_other") == (2, 0)  # a type it does not type-check against: no match
    assert counted("whc_comment") == (1, 0)


def test_the_compiled_program_cache_is_bounded() -> None:
    expression = "event.data.points > 0"
    cache = filter_cache.ProgramCache(3 * filter_cache.program_bytes(expression))
    for i in range(10):
        cache.program(f"event.data.points > {i}", "reward.claimed")
    assert len(cache) == 3
    assert cache.program(expression, "reward.claimed") is cache.program(
        expression, "reward.claimed"
    )  # compiled once while kept
