"""``webhooks serve`` as a child process on a test database: what "every
process of a deployment" means in the tests of shared limits and revocation.

    with serve_process(database_url, {"RATE_LIMIT_PER_SECOND": "5"}) as target:
        AdminClient(target, key)

Settings are WEBHOOKS_* names without the prefix; the gateway secret is the
one tests/support/envoy.py's gateway sends, so the child believes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from tests.support.server import TEST_GATEWAY_SECRET

WEBHOOKS = os.path.join(os.path.dirname(sys.executable), "webhooks")


def read_target(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The gRPC target a starting ``webhooks serve`` logs ("" if it did not);
    its stderr is drained from then on, so the child never blocks on a full pipe."""
    assert proc.stderr is not None
    target = ""
    deadline = time.monotonic() + timeout
    while not target and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if "serving gRPC on " in line:
            target = line.rsplit(" ", 1)[1].strip()
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return target


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 15 s."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextmanager
def serve_process(database_url: str, settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """Start ``webhooks serve``; yields its gRPC target ("127.0.0.1:PORT")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    env.update(
        WEBHOOKS_DATABASE_URL=database_url,
        WEBHOOKS_GRPC_LISTEN="127.0.0.1:0",
        WEBHOOKS_METRICS_LISTEN="",
        WEBHOOKS_RATE_LIMIT_PER_SECOND="0",
        WEBHOOKS_AUTH_FAILURE_PER_SECOND="0",
        WEBHOOKS_GATEWAY_SECRET=TEST_GATEWAY_SECRET,
        WEBHOOKS_LOG_LEVEL="WARNING",
    )
    env.update({f"WEBHOOKS_{k}": v for k, v in (settings or {}).items()})
    proc = subprocess.Popen(
        [WEBHOOKS, "serve"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    target = read_target(proc)
    try:
        assert target, "webhooks serve did not start"
        yield target
    finally:
        stop(proc)
