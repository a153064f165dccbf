"""Property tests (hypothesis) for webhook configuration validation.

- validation is total: any text in any field gives a list of violations
  naming real request fields, never an exception;
- it accepts what it should (well-formed http(s) URLs, catalog patterns,
  Standard Webhooks secrets of 24-64 bytes, descriptions up to 256) and
  refuses what it should, with the violation on the right field;
- a violation never echoes a secret back;
- what is accepted is stored and listed back unchanged (SQLite and
  PostgreSQL), with the secret sealed and openable.
"""

from __future__ import annotations

import base64
import dataclasses

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from tests.support.server import make_org
from webhooks_service.config import Settings
from webhooks_service.core import catalog, configs
from webhooks_service.core.config_validation import validate
from webhooks_service.core.secrets_at_rest import ENCRYPTED_PREFIX, SecretCipher

KEY = "property-test-key-0123456789-abcdefghij"

FIELDS = {"url", "event_types", "secret", "description"}

patterns = st.sampled_from(
    [*catalog.all_types(), *(f"{c}.*" for c in catalog.categories()), catalog.WILDCARD]
)
hostnames = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True)
urls = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}/{path}",
    st.sampled_from(["http", "https"]),
    hostnames,
    st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")),
    st.from_regex(r"[A-Za-z0-9_\-./]{0,40}", fullmatch=True),
)
secrets_ok = st.binary(min_size=24, max_size=64).map(
    lambda raw: "whsec_" + base64.b64encode(raw).decode()
)
descriptions = st.text(max_size=256)


def _top(field: str) -> str:
    return field.split("[", 1)[0]


@given(
    url=st.text(max_size=300),
    event_types=st.lists(st.text(max_size=40), max_size=120),
    secret=st.one_of(st.none(), st.text(max_size=120)),
    description=st.text(max_size=300),
)
def test_validation_is_total_and_names_real_fields(
    url: str, event_types: list[str], secret: str | None, description: str
) -> None:
    problems = validate(url=url, event_types=event_types, secret=secret, description=description)
    assert {_top(p.field) for p in problems} <= FIELDS
    assert all(p.description for p in problems)
    if secret is not None and len(secret) > 8:
        # Never echoed: unless the caller also typed it into a field that is quoted.
        others = [url, description, *event_types]
        if not any(secret in text for text in others):
            assert all(secret not in p.description for p in problems)


@given(
    url=urls,
    event_types=st.lists(patterns, min_size=1, max_size=20),
    secret=st.one_of(st.none(), secrets_ok),
    description=descriptions,
)
def test_well_formed_configurations_are_accepted(
    url: str, event_types: list[str], secret: str | None, description: str
) -> None:
    assert validate(url=url, event_types=event_types, secret=secret, description=description) == []


@given(raw=st.binary(max_size=100))
def test_secret_length_rule(raw: bytes) -> None:
    secret = "whsec_" + base64.b64encode(raw).decode()
    problems = validate(url="https://a.example/", event_types=["*"], secret=secret, description="")
    ok = 24 <= len(raw) <= 64
    assert (problems == []) == ok
    assert all(p.field == "secret" for p in problems)


@given(secret=st.text(min_size=1, max_size=100))
def test_malformed_secrets_are_refused_without_echo(secret: str) -> None:
    problems = validate(url="https://a.example/", event_types=["*"], secret=secret, description="")
    try:
        body = secret.removeprefix("whsec_")
        valid = secret.startswith("whsec_") and len(base64.b64decode(body, validate=True)) >= 24
        valid = valid and len(base64.b64decode(body, validate=True)) <= 64
    except ValueError:
        valid = False
    assert (problems == []) == valid
    for p in problems:
        assert p.field == "secret"
        assert len(secret) < 4 or secret not in p.description


@given(pattern=st.text(max_size=30))
def test_event_type_patterns_follow_the_catalog(pattern: str) -> None:
    problems = validate(
        url="https://a.example/", event_types=[pattern], secret=None, description=""
    )
    assert (problems == []) == catalog.is_valid_pattern(pattern)
    assert all(p.field == "event_types[0]" for p in problems)


@given(
    url=urls,
    bad=st.sampled_from([" ", "\t", "\n", "\x00", "\x7f"]),
    at=st.integers(min_value=0, max_value=40),
)
def test_urls_with_whitespace_or_controls_are_refused(url: str, bad: str, at: int) -> None:
    position = min(at, len(url))
    broken = url[:position] + bad + url[position:]
    problems = validate(url=broken, event_types=["*"], secret=None, description="")
    assert [p.field for p in problems] == ["url"]


@given(extra=st.integers(min_value=1, max_value=500))
def test_descriptions_past_256_are_refused(extra: int) -> None:
    problems = validate(
        url="https://a.example/", event_types=["*"], secret=None, description="d" * (256 + extra)
    )
    assert [p.field for p in problems] == ["description"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    url=urls,
    event_types=st.lists(patterns, min_size=1, max_size=10),
    secret=secrets_ok,
    description=descriptions.filter(lambda d: "\x00" not in d),
)
def test_accepted_configurations_round_trip(
    engine: Engine, url: str, event_types: list[str], secret: str, description: str
) -> None:
    org_id = make_org(engine)
    app_settings = dataclasses.replace(Settings(), secret_key=KEY)
    put = configs.put_config(
        engine,
        app_settings,
        org_id,
        config_id="",
        url=url,
        event_types=event_types,
        secret=secret,
        enabled=None,
        description=description,
    )
    rows, _ = configs.list_configs(engine, org_id, secret_key=KEY)
    [row] = rows
    assert (row.url, row.description, row.enabled) == (url, description, True)
    assert row.event_types == tuple(dict.fromkeys(event_types))
    assert row.secret == secret and put.config.secret == secret
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT secret FROM webhook_configs WHERE id = :id"), {"id": row.id}
        ).scalar_one()
    assert stored.startswith(ENCRYPTED_PREFIX) and SecretCipher(KEY).open(stored) == secret
