"""API key lifecycle from the operator's CLI: create (with expiry), list, revoke.

A revoked or expired key must be refused by *every* running process within a
second: checked against the in-process server and a second ``webhooks serve``
process sharing the database, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.polling import eventually
from tests.support.serve_process import serve_process
from tests.support.server import running_server
from webhooks_client import AdminClient, UnauthenticatedError
from webhooks_service import cli as webhooks_cli

pytestmark = pytest.mark.timeout(120)


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``webhooks ARGS`` in-process (the CLI's own entry point; a subprocess
    costs seconds on a loaded machine, which the expiry test cannot afford)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = webhooks_cli.main([*args, "--database-url", database_url])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def second_process(database_url: str) -> AbstractContextManager[str]:
    """``webhooks serve`` as a child process on the same database; yields its gRPC target."""
    return serve_process(database_url)


def works(target: str, key: str) -> bool:
    with AdminClient(target, key, timeout=5) as admin:
        try:
            list(admin.list_webhook_configs())
        except UnauthenticatedError:
            return False
    return True


def refused_everywhere_within(targets: list[str], key: str, seconds: float) -> float:
    """Seconds until every target refuses ``key``; fails past ``seconds``."""
    start = time.monotonic()
    pending = set(targets)

    def all_refuse() -> bool:
        nonlocal pending
        pending = {t for t in pending if works(t, key)}
        return not pending

    eventually(all_refuse, seconds, "every process to refuse the key")
    return time.monotonic() - start


def listed(database_url: str, *args: str) -> list[dict[str, Any]]:
    result = cli(database_url, "keys", "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_keys_list_and_revoke_reach_every_process_within_a_second(database_url: str) -> None:
    org = cli(database_url, "orgs", "create", "Acme").stdout.strip()
    created = cli(
        database_url, "keys", "create", "--org", org, "--scope", "webhooks:read", "--name", "ci"
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    other = cli(database_url, "keys", "create", "--org", org, "--scope", "webhooks:read")
    other_key = other.stdout.strip()

    with running_server(database_url) as srv, second_process(database_url) as target_b:
        targets = [srv.target, target_b]
        assert all(works(t, key) and works(t, other_key) for t in targets)

        [row, _] = listed(database_url, "--org", org)
        assert key.startswith(row["prefix"]) and row["prefix"].startswith("whk_")
        assert row["id"].startswith("key_") and row["name"] == "ci"
        assert row["scopes"] == ["webhooks:read"] and row["organisation_id"] == org
        assert row["revoked_at"] is None and row["expires_at"] is None
        assert row["status"] == "active"
        table = cli(database_url, "keys", "list").stdout
        assert key not in table and other_key not in table and row["prefix"] in table
        # the key's secret part (after its listed prefix; it may itself hold "_")
        assert key[len(row["prefix"]) :] not in json.dumps(listed(database_url))

        # the operator found a leaked key by its first characters and revokes it
        revoked = cli(database_url, "keys", "revoke", key[: len(row["prefix"]) + 4])
        assert revoked.returncode == 0, revoked.stderr
        took = refused_everywhere_within(targets, key, 1.0)
        assert took < 1.0
        assert all(works(t, other_key) for t in targets)  # the other key is untouched

        [row, _] = listed(database_url, "--org", org)
        assert row["status"] == "revoked" and row["revoked_at"] is not None
        assert row["last_used_at"] is not None  # used by the calls above
    again = cli(database_url, "keys", "revoke", row["id"])
    assert again.returncode == 0  # revoking twice is harmless
    missing = cli(database_url, "keys", "revoke", "key_00000000000000000000")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_an_expired_key_is_refused_by_every_process(database_url: str) -> None:
    org = cli(database_url, "orgs", "create", "Acme").stdout.strip()
    with running_server(database_url) as srv, second_process(database_url) as target_b:
        targets = [srv.target, target_b]
        created = cli(
            database_url,
            "keys",
            "create",
            "--org",
            org,
            "--scope",
            "webhooks:read",
            "--expires-in",
            "4s",
        )
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
        [row] = listed(database_url, "--org", org)
        expires = datetime.fromisoformat(row["expires_at"].replace("Z", "+00:00"))
        assert all(works(t, key) for t in targets)
        wait = (expires - datetime.now(UTC)).total_seconds()
        assert wait > 0, "the key expired before it was tried; raise --expires-in"
        eventually(lambda: datetime.now(UTC) >= expires, wait + 5, "the key's expiry time")
        refused_everywhere_within(targets, key, 1.0)
    [row] = listed(database_url, "--org", org)
    assert row["status"] == "expired"
    bad = cli(database_url, "keys", "create", "--org", org, "--scope", "x", "--expires-in", "0")
    assert bad.returncode == 2
