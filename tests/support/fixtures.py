"""Reusable pytest fixtures; import them into a test module:

    from tests.support.fixtures import org, server  # noqa: F401

``server`` is a :class:`RunningServer` on the parametrised ``database_url``
(SQLite and PostgreSQL); ``org`` is an :class:`OrgKeys` with one key per
scope.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.server import RunningServer, make_org_and_keys, running_server


@dataclass(frozen=True)
class OrgKeys:
    id: str
    keys: dict[str, str]  # scope name / "all" / "platform" -> whole API key

    @property
    def read(self) -> str:
        return self.keys["webhooks:read"]

    @property
    def write(self) -> str:
        return self.keys["webhooks:write"]

    @property
    def publish(self) -> str:
        return self.keys["events:publish"]

    @property
    def all(self) -> str:
        return self.keys["all"]

    @property
    def platform(self) -> str:
        return self.keys["platform"]


@pytest.fixture
def server(database_url: str) -> Iterator[RunningServer]:
    """The API server (no worker) on a free port, against ``database_url``."""
    with running_server(database_url) as srv:
        yield srv


@pytest.fixture
def org(server: RunningServer) -> OrgKeys:
    org_id, keys = make_org_and_keys(server.engine, "Acme")
    return OrgKeys(org_id, keys)


@pytest.fixture
def other_org(server: RunningServer) -> OrgKeys:
    org_id, keys = make_org_and_keys(server.engine, "Globex")
    return OrgKeys(org_id, keys)
