"""`make demo` tells its story plainly (issue 14): what each endpoint does, up
front; no service log lines in between; counts that match its own table; no
path of a database that is gone when it exits."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_demo_output_is_consistent() -> None:
    result = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=150, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert result.stderr == ""  # no log line interleaved with the story
    intro = out[: out.index("registered /orders")]
    for path in ("/orders", "/flaky", "/strict"):
        assert re.search(rf"^  {path}\s+answers ", intro, re.M), intro
    assert "sqlite:///" not in out and "removed on exit" in intro

    table = out[out.index("delivery log (oldest first):") :].splitlines()
    rows = [line.split() for line in table if line.startswith("att_")]
    delivered = sum(1 for r in rows if "delivered" in r)
    retried = sum(1 for r in rows if "retry_scheduled" in r)
    failed = sum(1 for r in rows if "failed" in r)
    assert (delivered, retried, failed) == (8, 2, 1), out
    assert f"{len(rows)} attempts: 8 delivered, 2 retried, 1 failed for good, 0 dead" in out
    assert f"receiver: got {len(rows)} requests (/orders 6, /flaky 4, /strict 1)" in out
    assert f"{len(rows)} carried a valid signature, 0 did not" in out
