"""WebhookAdmin configurations through the real server and the generated client,
on SQLite and PostgreSQL: create, list, update, isolation, every validation rule."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fixtures import OrgKeys, org, other_org, server  # noqa: F401
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks_client import (
    AdminClient,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def admin(server: RunningServer, org: OrgKeys) -> Iterator[AdminClient]:  # noqa: F811
    with AdminClient(server.target, org.all) as client:
        yield client


def violations(err: InvalidArgumentError) -> dict[str, str]:
    return {v.field: v.description for v in err.field_violations}


def test_create_returns_generated_secret_once_and_list_shows_only_hint(admin: AdminClient) -> None:
    created = admin.put_webhook_config(
        url="https://example.com/hooks", event_types=["reward.claimed", "user.*"]
    )
    assert created.created
    assert created.secret.startswith("whsec_")
    config = created.config
    assert config.id.startswith("whc_")
    assert config.enabled  # default on create
    assert config.secret_hint == created.secret[:8] + "…"
    assert list(config.event_types) == ["reward.claimed", "user.*"]
    assert config.created_at is not None and config.created_at.year > 2000
    assert config.updated_at == config.created_at

    listed = admin.list_webhook_configs()
    assert [c.id for c in listed] == [config.id]
    assert listed[0].secret_hint == config.secret_hint
    assert created.secret not in str(listed[0])


def test_given_secret_is_kept_and_never_returned(admin: AdminClient) -> None:
    created = admin.put_webhook_config(url="http://example.com/a", event_types=["*"], secret=SECRET)
    assert created.secret == ""
    assert created.config.secret_hint == "whsec_Mf…"
    assert SECRET not in str(admin.list_webhook_configs())


def test_update_by_id_replaces_settings_and_keeps_absent_ones(admin: AdminClient) -> None:
    first = admin.put_webhook_config(
        url="https://example.com/a",
        event_types=["*"],
        secret=SECRET,
        enabled=False,
        description="first",
    ).config
    updated = admin.put_webhook_config(
        id=first.id, url="https://example.com/b", event_types=["reward.*"], description="second"
    )
    assert not updated.created and updated.secret == ""
    config = updated.config
    assert config.id == first.id
    assert config.url == "https://example.com/b"
    assert list(config.event_types) == ["reward.*"]
    assert config.description == "second"
    assert not config.enabled  # absent: kept
    assert config.secret_hint == "whsec_Mf…"  # absent: kept
    assert config.created_at == first.created_at
    assert config.updated_at and first.updated_at and config.updated_at >= first.updated_at

    enabled = admin.put_webhook_config(
        id=first.id, url=config.url, event_types=["*"], enabled=True
    ).config
    assert enabled.enabled
    assert [c.url for c in admin.list_webhook_configs()] == ["https://example.com/b"]


def test_update_of_unknown_id_is_not_found(admin: AdminClient) -> None:
    with pytest.raises(NotFoundError):
        admin.put_webhook_config(id="whc_doesnotexist", url="https://x.example", event_types=["*"])


def test_organisations_are_isolated(
    server: RunningServer,  # noqa: F811
    org: OrgKeys,  # noqa: F811
    other_org: OrgKeys,  # noqa: F811
) -> None:
    with (
        AdminClient(server.target, org.all) as mine,
        AdminClient(server.target, other_org.all) as theirs,
    ):
        own = mine.put_webhook_config(url="https://a.example", event_types=["*"]).config
        other = theirs.put_webhook_config(url="https://b.example", event_types=["*"]).config
        assert [c.id for c in mine.list_webhook_configs()] == [own.id]
        assert [c.id for c in theirs.list_webhook_configs()] == [other.id]
        with pytest.raises(NotFoundError):
            mine.put_webhook_config(id=other.id, url="https://evil.example", event_types=["*"])
        assert theirs.list_webhook_configs()[0].url == "https://b.example"


def test_list_is_oldest_first_across_pages(admin: AdminClient) -> None:
    ids = [
        admin.put_webhook_config(url=f"https://example.com/{i}", event_types=["*"]).config.id
        for i in range(5)
    ]
    assert [c.id for c in admin.list_webhook_configs(page_size=2)] == ids


BAD_REQUESTS = [
    ("url", {"url": ""}),
    ("url", {"url": "example.com/hook"}),
    ("url", {"url": "ftp://example.com/hook"}),
    ("url", {"url": "https://user:pw@example.com/hook"}),
    ("url", {"url": "https://user@example.com/hook"}),
    ("url", {"url": "https://example.com/" + "a" * 2030}),
    ("url", {"url": "https:///nohost"}),
    ("url", {"url": "https://exa mple.com/"}),
    ("event_types", {"event_types": []}),
    ("event_types[1]", {"event_types": ["reward.claimed", "reward.unknown"]}),
    ("event_types[0]", {"event_types": ["nosuch.*"]}),
    ("event_types[0]", {"event_types": ["reward"]}),
    ("event_types[0]", {"event_types": ["*.claimed"]}),
    ("secret", {"secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
    ("secret", {"secret": "whsec_not base64!"}),
    ("secret", {"secret": "whsec_" + "QUFB" * 7}),  # 21 bytes
    ("secret", {"secret": "whsec_" + "QUFB" * 22}),  # 66 bytes
    ("description", {"description": "d" * 257}),
]


@pytest.mark.parametrize(("field", "change"), BAD_REQUESTS, ids=[f for f, _ in BAD_REQUESTS])
def test_validation_names_the_field(
    admin: AdminClient, field: str, change: dict[str, object]
) -> None:
    request: dict[str, object] = {"url": "https://example.com/hook", "event_types": ["*"]}
    request.update(change)
    with pytest.raises(InvalidArgumentError) as info:
        admin.put_webhook_config(**request)  # type: ignore[arg-type]
    assert list(violations(info.value)) == [field]
    assert admin.list_webhook_configs() == []


def test_boundaries_that_are_valid(admin: AdminClient) -> None:
    url = "https://example.com/" + "a" * (2048 - len("https://example.com/"))
    config = admin.put_webhook_config(
        url=url,
        event_types=["*", "reward.*", "referral.referee_rewarded"],
        secret="whsec_" + "QUFB" * 8,  # 24 bytes
        description="d" * 256,
    ).config
    assert config.url == url
    admin.put_webhook_config(
        id=config.id,
        url="http://127.0.0.1:8080/x",
        event_types=["*"],
        secret="whsec_" + "QUFB" * 21 + "QQ==",
    )  # 64 bytes


def test_every_problem_is_reported_at_once(admin: AdminClient) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        admin.put_webhook_config(url="nope", event_types=[], secret="x", description="d" * 300)
    assert set(violations(info.value)) == {"url", "event_types", "secret", "description"}


def test_validation_applies_to_updates_too(admin: AdminClient) -> None:
    config = admin.put_webhook_config(url="https://example.com", event_types=["*"]).config
    with pytest.raises(InvalidArgumentError) as info:
        admin.put_webhook_config(id=config.id, url="https://example.com", event_types=["bad"])
    assert list(violations(info.value)) == ["event_types[0]"]


def test_too_many_configs_is_failed_precondition(database_url: str) -> None:
    with running_server(database_url, {"max_configs_per_org": 2}) as srv:
        _, keys = make_org_and_keys(srv.engine)
        with AdminClient(srv.target, keys["all"]) as client:
            for i in range(2):
                client.put_webhook_config(url=f"https://example.com/{i}", event_types=["*"])
            with pytest.raises(FailedPreconditionError, match="maximum of 2"):
                client.put_webhook_config(url="https://example.com/3", event_types=["*"])
            # Updating an existing one is still allowed at the limit.
            first = client.list_webhook_configs()[0]
            client.put_webhook_config(id=first.id, url="https://example.com/new", event_types=["*"])


def test_one_update_rule_for_every_optional_field(admin: AdminClient) -> None:
    """Absent keeps the current value, present replaces it even when empty/false:
    the same for secret, enabled and description."""
    first = admin.put_webhook_config(
        url="https://example.com/a", event_types=["*"], secret=SECRET, description="billing"
    ).config
    kept = admin.put_webhook_config(id=first.id, url=first.url, event_types=["*"]).config
    assert (kept.description, kept.enabled, kept.secret_hint) == ("billing", True, "whsec_Mf…")
    cleared = admin.put_webhook_config(
        id=first.id, url=first.url, event_types=["*"], description="", enabled=False
    ).config
    assert (cleared.description, cleared.enabled, cleared.secret_hint) == ("", False, "whsec_Mf…")
    created = admin.put_webhook_config(url="https://example.com/b", event_types=["*"]).config
    assert (created.description, created.enabled) == ("", True)  # defaults on create
