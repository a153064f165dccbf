"""README's "Five minutes with it" pastes and runs as written (issue 14).

A real `webhooks serve` runs in a scratch checkout (``.venv`` linked to this
one, the database where `make run` keeps it); the README's shell block runs
in bash, the Python block is saved as ``walkthrough.py`` and the README's
command runs it. The one change to the text: the gRPC address, because tests
bind free ports and 127.0.0.1:50051 may be taken on a shared machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli import free_port

README = Path(__file__).resolve().parent.parent / "README.md"
VENV = Path(sys.executable).parent.parent
DOC_ADDRESS = "127.0.0.1:50051"

pytestmark = pytest.mark.timeout(180)


def walkthrough_blocks() -> list[tuple[str, str]]:
    """The (language, code) blocks of the walkthrough section, in order."""
    text = README.read_text()
    start = text.index("<!-- walkthrough:")
    end = text.index("\n## ", start)
    return re.findall(r"```(sh|python)\n(.*?)```", text[start:end], re.S)


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A scratch checkout with `webhooks serve` running as `make run` would, from it."""
    (tmp_path / ".venv").symlink_to(VENV)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    address = f"127.0.0.1:{free_port()}"
    env.update(WEBHOOKS_GRPC_LISTEN=address, WEBHOOKS_METRICS_LISTEN="")
    server = subprocess.Popen(
        [str(VENV / "bin" / "webhooks"), "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = server.stderr.readline()
            if "serving gRPC on" in line or not line:
                break
        assert server.poll() is None, "webhooks serve did not start"
        yield tmp_path, address
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_readme_walkthrough_runs_as_written(checkout: tuple[Path, str]) -> None:
    directory, address = checkout
    blocks = walkthrough_blocks()
    assert [lang for lang, _ in blocks] == ["sh", "python", "sh"], blocks
    (_, setup), (_, snippet), (_, run) = blocks
    assert snippet.count(DOC_ADDRESS) == 3
    (directory / "walkthrough.py").write_text(snippet.replace(DOC_ADDRESS, address))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    env["PATH"] = "/usr/bin:/bin"  # the block's own PATH line must find `webhooks`
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", setup + run],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 6, result.stdout
    created, listed, violations, published, data_violations, attempt = lines
    assert re.fullmatch(r"whc_[0-9a-f]{20} whsec_\S+", created), created
    config_id = created.split()[0]
    assert listed.startswith(f"{config_id} https://example.com/hooks ['reward.*', ")
    assert violations == "['url', 'event_types[0]']"
    assert re.fullmatch(
        r"PublishResult\(event_id='evt_\w+', deliveries=1, duplicate=False\)", published
    )
    # JSON data is checked against the type's payload message, each field named
    assert (
        data_violations == "['event.data.reward_id', 'event.data.points', 'event.data.claimed_at']"
    )
    # The first attempt, waited for; enums and datetimes print as words and times.
    assert re.match(r"1 (retry_scheduled|failed|delivered) \d+ .*\d{4}-\d\d-\d\d ", attempt)
    assert (directory / ".webhooks" / "webhooks.db").is_file()
