"""Secrets: never shown or logged, API keys hashed, webhook secrets encrypted at
rest with ``WEBHOOKS_SECRET_KEY``, and rotation that keeps the previous secret
signing for a grace period.

Real server + worker, real receiver, real database (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Receiver, running_receiver
from tests.support.server import RunningServer, make_org, make_org_and_keys, running_server
from tests.support.server import test_settings as make_settings
from webhooks_client import AdminClient, InvalidArgumentError, PublisherClient
from webhooks_service.api.server import start_server
from webhooks_service.core import keys as core_keys
from webhooks_service.core.config_validation import generate_secret
from webhooks_service.core.credentials import split_token
from webhooks_service.core.secrets_at_rest import ENCRYPTED_PREFIX, SecretCipher, reseal_all
from webhooks_service.errors import ConfigurationError, DuplicateKey
from webhooks_service.storage import db

FAST = {"retry_schedule": (0.05, 0.05)}
KEY = "k" * 8 + "-test-key-with-enough-random-characters"
OTHER_KEY = "o" * 8 + "-another-key-with-enough-random-chars"


class Env:
    def __init__(self, srv: RunningServer, rx: Receiver, org: tuple[str, dict[str, str]]) -> None:
        self.srv, self.rx = srv, rx
        self.org_id, self.keys = org
        self.admin = AdminClient(srv.target, self.keys["all"])
        self.publisher = PublisherClient(srv.target, self.keys["events:publish"])

    def close(self) -> None:
        self.admin.close()
        self.publisher.close()

    def publish(self, event_id: str) -> None:
        self.publisher.publish_event(
            self.org_id, "reward.claimed", example("reward.claimed"), id=event_id
        )

    def wait_logs(self, timeout: float = 15.0) -> list[Any]:
        return eventually(lambda: list(self.admin.iter_delivery_logs()), timeout, "a log entry")

    def stored_secrets(self, config_id: str) -> tuple[str, str | None]:
        with self.srv.engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT secret, previous_secret FROM webhook_configs WHERE id = :id"
                ).bindparams(id=config_id)
            ).one()
        return row[0], row[1]


def _env(database_url: str, overrides: dict[str, Any], org: Any = None) -> Any:
    class _Ctx:
        def __enter__(self) -> Env:
            self._rx = running_receiver()
            rx = self._rx.__enter__()
            self._srv = running_server(database_url, {**FAST, **overrides}, worker=True)
            srv = self._srv.__enter__()
            self.env = Env(srv, rx, org or make_org_and_keys(srv.engine))
            return self.env

        def __exit__(self, *exc: Any) -> None:
            self.env.close()
            self._srv.__exit__(*exc)
            self._rx.__exit__(*exc)

    return _Ctx()


@pytest.fixture
def env(database_url: str) -> Iterator[Env]:
    with _env(database_url, {}) as e:
        yield e


@pytest.fixture
def enc_env(database_url: str) -> Iterator[Env]:
    with _env(database_url, {"secret_key": KEY}) as e:
        yield e


def _verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


# -- never shown, never logged ---------------------------------------------------


def test_secret_never_in_list_logs_errors_or_server_log(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first, second = generate_secret(), generate_secret()
    created = env.admin.put_webhook_config(
        url=env.rx.url("/h"), event_types=["*"], secret=first
    ).config
    env.admin.put_webhook_config(
        id=created.id, url=env.rx.url("/h"), event_types=["*"], secret=second
    )
    # An invalid secret's error must not echo it (nor a near-valid one's).
    for bad in (second[:-4] + "!!!!", "not-a-secret-" + second[6:], second + "AAAA"):
        with pytest.raises(InvalidArgumentError) as err:
            env.admin.put_webhook_config(url=env.rx.url("/h"), event_types=["*"], secret=bad)
        shown = str(err.value) + repr(err.value.field_violations)
        assert bad not in shown and bad[6:20] not in shown
        assert [v.field for v in err.value.field_violations] == ["secret"]
    env.publish("evt_leak")
    env.rx.wait_for(1, "/h")
    listed = env.admin.list_webhook_configs()
    logs = env.wait_logs()
    everything = str(listed) + str(logs) + caplog.text
    for secret in (first, second):
        assert secret not in everything and secret[6:] not in everything
    assert listed[0].secret_hint == second[:8] + "…"


def test_api_keys_are_stored_hashed(env: Env) -> None:
    with env.srv.engine.connect() as conn:
        rows = [tuple(map(str, r)) for r in conn.execute(sa.text("SELECT * FROM api_keys"))]
    assert len(rows) >= len(env.keys)
    dump = repr(rows)
    for key in env.keys.values():
        parts = split_token(key, core_keys.KEY_PREFIX, core_keys.ID_PREFIX)
        assert parts is not None
        secret_part = parts[1]
        assert len(secret_part) >= 32
        assert key not in dump and secret_part not in dump


# -- encrypted at rest ---------------------------------------------------------------


def test_cipher_round_trip_plaintext_passthrough_and_key_list() -> None:
    old, new = SecretCipher(OTHER_KEY), SecretCipher(f"{KEY},{OTHER_KEY}")
    secret = generate_secret()
    sealed = old.seal(secret)
    assert sealed.startswith(ENCRYPTED_PREFIX) and secret not in sealed
    assert sealed != old.seal(secret)  # a fresh nonce every time
    assert new.open(sealed) == secret  # the second key still opens old rows
    with pytest.raises(ConfigurationError):
        old.open(new.seal(secret))  # the first key of the list seals
    assert SecretCipher("").open(secret) == secret and SecretCipher("").seal(secret) == secret
    assert new.open(secret) == secret  # plaintext rows stay readable
    with pytest.raises(ConfigurationError, match="not set"):
        SecretCipher("").open(sealed)
    with pytest.raises(ConfigurationError, match="does not decrypt") as err:
        SecretCipher(KEY).open(sealed)
    assert secret not in str(err.value) and sealed[7:] not in str(err.value)
    with pytest.raises(ConfigurationError, match="at least 32"):
        SecretCipher("short")


def test_encrypted_at_rest_and_delivered_signed(enc_env: Env) -> None:
    response = enc_env.admin.put_webhook_config(url=enc_env.rx.url("/e"), event_types=["*"])
    secret = response.secret
    stored, _ = enc_env.stored_secrets(response.config.id)
    assert stored.startswith(ENCRYPTED_PREFIX) and secret not in stored
    assert SecretCipher(KEY).open(stored) == secret
    assert enc_env.admin.list_webhook_configs()[0].secret_hint == secret[:8] + "…"
    enc_env.publish("evt_enc")
    (got,) = enc_env.rx.wait_for(1, "/e")
    assert _verifies(secret, got.body, got.headers)


def test_plaintext_rows_keep_working_and_are_sealed_on_next_write(database_url: str) -> None:
    with _env(database_url, {}) as plain:
        response = plain.admin.put_webhook_config(url=plain.rx.url("/p"), event_types=["*"])
        org = (plain.org_id, plain.keys)
    config_id, secret = response.config.id, response.secret
    with _env(database_url, {"secret_key": KEY}, org) as enc:
        assert enc.stored_secrets(config_id)[0] == secret  # untouched until written
        enc.admin.put_webhook_config(id=config_id, url=enc.rx.url("/p"), event_types=["*"])
        stored, previous = enc.stored_secrets(config_id)
        assert stored.startswith(ENCRYPTED_PREFIX) and previous is None  # same secret
        enc.publish("evt_migrated")
        (got,) = enc.rx.wait_for(1, "/p")
        assert _verifies(secret, got.body, got.headers)


@pytest.mark.parametrize("key", ["", OTHER_KEY], ids=["missing", "wrong"])
def test_missing_or_wrong_key_stops_startup(database_url: str, key: str) -> None:
    with _env(database_url, {"secret_key": KEY}) as enc:
        enc.admin.put_webhook_config(url=enc.rx.url("/x"), event_types=["*"])
        engine = enc.srv.engine
        settings = make_settings(database_url, {"secret_key": key})
        with pytest.raises(ConfigurationError) as err:
            asyncio.run(start_server(settings, engine))
        assert "WEBHOOKS_SECRET_KEY" in str(err.value)


# -- rotation ------------------------------------------------------------------------


def _signatures(headers: dict[str, str]) -> list[str]:
    return headers["webhook-signature"].split()


def test_rotation_signs_with_both_until_the_grace_ends(enc_env: Env) -> None:
    old, new = generate_secret(), generate_secret()
    url = enc_env.rx.url("/r")
    config = enc_env.admin.put_webhook_config(url=url, event_types=["*"], secret=old).config
    enc_env.admin.put_webhook_config(id=config.id, url=url, event_types=["*"], secret=new)
    _, previous = enc_env.stored_secrets(config.id)
    assert previous is not None and previous.startswith(ENCRYPTED_PREFIX)
    enc_env.publish("evt_rot_1")
    (got,) = enc_env.rx.wait_for(1, "/r")
    assert len(_signatures(got.headers)) == 2
    assert _verifies(old, got.body, got.headers) and _verifies(new, got.body, got.headers)
    # The grace period ends (24 h by default): move its end into the past.
    with db.write_transaction(enc_env.srv.engine) as conn:
        conn.execute(
            sa.text(
                "UPDATE webhook_configs SET previous_secret_expires_at = :t WHERE id = :id"
            ).bindparams(
                sa.bindparam("t", type_=sa.DateTime(timezone=True)),
                t=_past(),
                id=config.id,
            )
        )
    enc_env.publish("evt_rot_2")
    got2 = enc_env.rx.wait_for(2, "/r")[1]
    assert len(_signatures(got2.headers)) == 1
    assert _verifies(new, got2.body, got2.headers)
    assert not _verifies(old, got2.body, got2.headers)


def _past() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=1)


def test_rotation_grace_is_configurable(database_url: str) -> None:
    with _env(database_url, {"secret_rotation_grace_seconds": 0.0}) as e:
        old, new = generate_secret(), generate_secret()
        url = e.rx.url("/g")
        config = e.admin.put_webhook_config(url=url, event_types=["*"], secret=old).config
        e.admin.put_webhook_config(id=config.id, url=url, event_types=["*"], secret=new)
        e.admin.put_webhook_config(id=config.id, url=url, event_types=["*"], secret=new)
        assert e.stored_secrets(config.id) == (new, None)
        e.publish("evt_nograce")
        (got,) = e.rx.wait_for(1, "/g")
        assert _signatures(got.headers) and len(_signatures(got.headers)) == 1
        assert _verifies(new, got.body, got.headers) and not _verifies(old, got.body, got.headers)


def test_putting_the_same_secret_again_is_not_a_rotation(env: Env) -> None:
    secret = generate_secret()
    url = env.rx.url("/s")
    config = env.admin.put_webhook_config(url=url, event_types=["*"], secret=secret).config
    env.admin.put_webhook_config(id=config.id, url=url, event_types=["*"], secret=secret)
    assert env.stored_secrets(config.id) == (secret, None)


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_cli_refuses_to_start_without_the_key(database_url: str, command: str) -> None:
    """`webhooks serve` / `webhooks worker` stop with one line, exit 2, no traceback."""
    with _env(database_url, {"secret_key": KEY}) as enc:
        enc.admin.put_webhook_config(url=enc.rx.url("/cli"), event_types=["*"])
    exe = Path(sys.executable).parent / "webhooks"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    args = [str(exe), command, "--database-url", database_url]
    if command == "serve":
        args += ["--grpc-listen", "127.0.0.1:0"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if "webhooks: error:" in line]
    assert len(lines) == 1 and "WEBHOOKS_SECRET_KEY" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_reseal_encrypts_plaintext_rows_and_moves_to_a_new_key(database_url: str) -> None:
    with _env(database_url, {}) as plain:
        first = plain.admin.put_webhook_config(url=plain.rx.url("/a"), event_types=["*"])
        rotated = plain.admin.put_webhook_config(url=plain.rx.url("/b"), event_types=["*"])
        newer = generate_secret()
        plain.admin.put_webhook_config(
            id=rotated.config.id, url=plain.rx.url("/b"), event_types=["*"], secret=newer
        )
        engine = plain.srv.engine
        assert reseal_all(engine, OTHER_KEY, batch_size=1) == 2
        old_stored = plain.stored_secrets(first.config.id)[0]
        assert old_stored.startswith(ENCRYPTED_PREFIX)
        # Key rotation: the new key first, the old one still listed; then old dropped.
        exe = Path(sys.executable).parent / "webhooks"
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
        env["WEBHOOKS_SECRET_KEY"] = f"{KEY},{OTHER_KEY}"
        result = subprocess.run(
            [str(exe), "secrets", "reseal", "--database-url", database_url],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert "2 webhook configuration" in result.stdout
        only_new = SecretCipher(KEY)
        assert only_new.open(plain.stored_secrets(first.config.id)[0]) == first.secret
        secret, previous = plain.stored_secrets(rotated.config.id)
        assert only_new.open(secret) == newer
        assert previous is not None and only_new.open(previous) == rotated.secret
        with pytest.raises(ConfigurationError):
            SecretCipher(OTHER_KEY).open(secret)
    with pytest.raises(ConfigurationError, match="WEBHOOKS_SECRET_KEY"):
        reseal_all(engine, "")


def test_database_errors_never_carry_the_secret(engine: sa.Engine) -> None:
    """SQL parameters stay out of exception text (and so out of server logs)."""
    from webhooks_service.storage import configs as store

    org_id = make_org(engine)
    secret = generate_secret()
    now = datetime.now(UTC)
    row = store.ConfigRow(
        "whc_dup", org_id, "https://a.example/", ("*",), True, "", secret, "", now, now
    )
    with db.write_transaction(engine) as conn:
        store.insert(conn, row)
    with pytest.raises(DuplicateKey) as err, db.write_transaction(engine) as conn:
        store.insert(conn, row)
    # Storage raises the service's own error; neither it, its log detail nor the
    # driver's exception it comes from carries the secret.
    for text in (str(err.value), err.value.detail, str(err.value.__cause__)):
        assert secret not in text and secret[6:] not in text
