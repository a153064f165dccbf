"""``webhooks run`` and ``webhooks gateway`` as a user runs them: real processes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.envoy import require_envoy
from webhooks_service.cli import main as cli_main

pytestmark = [pytest.mark.gateway, pytest.mark.timeout(120)]

WEBHOOKS = str(Path(sys.executable).parent / "webhooks")


def _read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 60) -> str:
    """Lines of ``proc``'s stdout up to one matching ``pattern`` (or fail)."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"exited {proc.wait()} before {pattern!r}:\n{''.join(seen)}")
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
    pytest.fail(f"no {pattern!r} within {timeout}s:\n{''.join(seen)}")


@pytest.fixture
def dev_stack(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    require_envoy()
    proc = subprocess.Popen(
        [
            WEBHOOKS,
            "run",
            "--database-url",
            f"sqlite:///{tmp_path / 'dev.db'}",
            "--grpc-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-level",
            "WARNING",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield proc, _read_until(proc, "Ctrl-C stops both")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_serves_rest_with_a_demo_key_and_stops_on_ctrl_c(
    dev_stack: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    proc, banner = dev_stack
    # What a second terminal needs for the `webhooks` commands (issue 14).
    assert f"export WEBHOOKS_DATABASE_URL=sqlite:///{tmp_path / 'dev.db'}" in banner
    rest = re.search(r"REST gateway\s+(http://\S+)", banner)
    key = re.search(r"WEBHOOKS_KEY=(whk_\S+)", banner)
    assert rest and key, banner
    configs_url = f"{rest.group(1)}/webhooks/configs"
    assert f'curl -H "authorization: Bearer $WEBHOOKS_KEY" {configs_url}' in banner

    resp = httpx.get(configs_url, headers={"authorization": f"Bearer {key.group(1)}"})
    assert resp.status_code == 200
    assert resp.json() == {"configs": [], "next_page_token": ""}

    # the dashboard link, signed in for the demo organisation
    link = re.search(r"(http://\S+/dashboard/)#token=(wpt_[\w-]+)", banner)
    assert link and link.group(1) == f"{rest.group(1)}/dashboard/", banner
    page = httpx.get(link.group(1))
    assert page.status_code == 200 and "<title>Webhooks</title>" in page.text
    as_dashboard = httpx.get(configs_url, headers={"authorization": f"Bearer {link.group(2)}"})
    assert as_dashboard.status_code == 200

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(configs_url, timeout=2)  # Envoy is gone too


def test_gateway_on_a_port_in_use_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    require_envoy()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli_main(["gateway", "--listen", f"127.0.0.1:{port}", "--upstream", "127.0.0.1:1"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"webhooks: error: gateway on 127.0.0.1:{port} did not start (Envoy exited 1): "
        f"address 127.0.0.1:{port} is already in use"
    )
