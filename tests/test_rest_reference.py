"""docs/rest.md's curl section: every REST path, each command working as written.

- every REST operation of the OpenAPI description has a curl command (its
  method and path, ids as the docs' placeholders);
- every command runs against the real gateway (Envoy in front of the server
  with its worker, SQLite) and answers 200, with the placeholders (``whc_…``,
  ``dlv_…``, ``evt_…``, ``wps_…``, ``page_token=…``) replaced by real values and
  example.com by a real receiver;
- the enum lists of the page are exactly the protos' values.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.descriptor import EnumDescriptor

from tests.support.envoy import running_gateway
from tests.support.receiver import running_receiver
from tests.support.seed import seed_attempts
from tests.support.server import make_org_and_keys, running_server
from webhooks.v1 import admin_pb2
from webhooks_client import AdminClient
from webhooks_service.core import logs

ROOT = Path(__file__).resolve().parent.parent
REST = ROOT / "docs" / "rest.md"
OPENAPI = ROOT / "gateway" / "openapi.json"
ENUMS = re.compile(r"<!-- enums -->\n(.*?)<!-- end enums -->", re.S)


def curl_block() -> str:
    text = REST.read_text()
    start = text.index("## curl, one per endpoint")
    block: str = re.findall(r"```sh\n(.*?)```", text[start:], re.S)[0]
    return block


def commands() -> tuple[list[str], list[str]]:
    """(preamble lines, curl commands) of the block, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", "", curl_block())
    lines = [line.strip() for line in joined.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    return [x for x in lines if not x.startswith("curl ")], [
        x for x in lines if x.startswith("curl ")
    ]


def _method(command: str) -> str:
    match = re.search(r"-X (\w+)", command)
    return match.group(1) if match else "GET"


def test_every_rest_path_has_a_curl_command() -> None:
    _, cmds = commands()
    paths = json.loads(OPENAPI.read_text())["paths"]
    missing = []
    for path, operations in paths.items():
        pattern = re.escape(path)
        pattern = re.sub(r"\\\{[a-z_]+\\\}", r"[^/?\"'\\s:]+", pattern)
        for method in operations:
            if not any(
                _method(c) == method.upper() and re.search(r"\$GW" + pattern + r"([?\"'\s]|$)", c)
                for c in cmds
            ):
                missing.append(f"{method.upper()} {path}")
    assert missing == [], f"docs/rest.md's curl section has no command for {missing}"


def _enum_values(name: str) -> list[str]:
    desc: EnumDescriptor = admin_pb2.DESCRIPTOR.enum_types_by_name[name]
    return [v.name for v in desc.values]


def test_enum_lists_are_the_protos() -> None:
    text = REST.read_text()
    match = ENUMS.search(text)
    assert match, "docs/rest.md lost its enums markers"
    listed = re.findall(r"- `(\w+)`[^:]*:(.*?)(?=\n- |\Z)", match.group(1), re.S)
    assert {name for name, _ in listed} == {
        "Outcome",
        "DeliveryStatus",
        "DeliveryLogView",
        "StatusClass",
    }
    for name, values in listed:
        assert re.findall(r"`([A-Z0-9_]+)`", values) == _enum_values(name), name
    # Every "expected one of" list in the page (e.g. the request check's message) is a
    # whole enum too.
    for found in re.findall(r"expected one of ((?:[A-Z0-9_]+, )*[A-Z0-9_]+)", text):
        values = found.split(", ")
        prefix = values[0].rsplit("_UNSPECIFIED", 1)[0]
        enum = next(
            e.name
            for e in admin_pb2.DESCRIPTOR.enum_types_by_name.values()
            if e.values[0].name == f"{prefix}_UNSPECIFIED"
        )
        assert values == _enum_values(enum), found


@pytest.fixture
def gateway_env(sqlite_template: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real gateway, server and receiver; values for the block's placeholders."""
    db_path = tmp_path / "webhooks.db"
    db_path.write_bytes(sqlite_template.read_bytes())
    url = f"sqlite:///{db_path}"
    with (
        running_receiver() as rx,
        running_server(url, {"retry_schedule": (0.2,)}, worker=True) as srv,
        running_gateway([srv.target]) as gw,
    ):
        org_id, keys = make_org_and_keys(srv.engine)
        with AdminClient(srv.target, keys["all"]) as admin:
            config = admin.put_webhook_config(url=rx.url("/hook"), event_types=["*"]).config
            seed_attempts(srv.engine, org_id, [config.id], 4, outcomes=("retry_scheduled",))
            entry = admin.send_test_event(config.id)  # a real delivery, delivered
            session = admin.create_portal_session()
        filters = logs.LogFilters(config_id=config.id, outcome="retry_scheduled")
        token = logs.list_logs(srv.engine, org_id, page_size=1, filters=filters)[1]
        assert token
        yield {
            "gw": gw.base_url,
            "key": keys["all"],
            "receiver": rx.url("/hook"),
            "whc_…": config.id,
            "dlv_…": entry.delivery_id,
            "evt_…": entry.event_id,
            "wps_…": session.session_id,
            "page_token=…": f"page_token={token}",
        }


def test_every_curl_command_works_as_written(gateway_env: dict[str, str]) -> None:
    preamble, cmds = commands()
    env = dict(gateway_env)
    setup = "\n".join(preamble)
    setup = setup.replace("export WEBHOOKS_KEY=whk_…", f"export WEBHOOKS_KEY={env.pop('key')}")
    setup = setup.replace("GW=http://127.0.0.1:8080", f"GW={env.pop('gw')}")
    receiver = env.pop("receiver")
    failures = []
    for command in cmds:
        real = command.replace("https://example.com/hook", receiver)
        for placeholder, value in env.items():
            real = real.replace(placeholder, value)
        assert "…" not in real, f"a placeholder the test does not fill: {command}"
        result = subprocess.run(
            ["bash", "-c", f"{setup}\n{real} -sS -o /dev/stdout -w '\\n%{{http_code}}'"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        body, _, status = result.stdout.rpartition("\n")
        if status != "200":
            failures.append(f"{command}\n  -> {status} {body[:300]} {result.stderr[:200]}")
    assert failures == [], "\n".join(failures)
