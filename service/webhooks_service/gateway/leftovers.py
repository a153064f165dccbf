"""Each gateway's private folder (``$TMPDIR/webhooks-gateway-*``) and what is
left of earlier gateways.

The folder holds the rendered bootstrap, the admin socket and ``gateway.json``
(the owner's and Envoy's pids). The next start removes folders whose processes
are gone, and reports Envoys still running although their owner died, so that
a "port in use" error can name them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

__all__ = ["STATE_FILE", "TMP_PREFIX", "Leftover", "clean_leftovers", "write_state"]

TMP_PREFIX = "webhooks-gateway-"
STATE_FILE = "gateway.json"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _envoy_of(folder: Path, pid: int) -> bool:
    """True when ``pid`` is an Envoy running with a config from ``folder``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return _alive(pid)  # no /proc: trust the pid
    return str(folder) in cmdline


@dataclasses.dataclass(frozen=True)
class Leftover:
    """An Envoy of an earlier gateway whose owner is gone, still running."""

    envoy_pid: int
    folder: Path
    listen: str


def write_state(folder: Path, envoy_pid: int, listen: str) -> None:
    state = {"owner_pid": os.getpid(), "envoy_pid": envoy_pid, "listen": listen}
    (folder / STATE_FILE).write_text(json.dumps(state))


def clean_leftovers(tmp_root: Path | None = None) -> list[Leftover]:
    """Remove the folders of earlier gateways whose processes are gone; return
    the Envoys still running although their owner died (orphans)."""
    root = Path(tmp_root or tempfile.gettempdir())
    orphans: list[Leftover] = []
    for folder in root.glob(TMP_PREFIX + "*"):
        if not folder.is_dir():
            continue
        try:
            state = json.loads((folder / STATE_FILE).read_text())
            owner, envoy = int(state["owner_pid"]), int(state.get("envoy_pid") or 0)
        except (OSError, ValueError, KeyError, TypeError):
            try:  # no state: a folder older than an hour is a leftover
                stale = time.time() - folder.stat().st_mtime > 3600
            except OSError:
                continue
            if stale:
                shutil.rmtree(folder, ignore_errors=True)
            continue
        if owner == os.getpid() or _alive(owner):
            continue  # a live gateway's folder (maybe another of this process)
        envoy_running = envoy > 0 and _alive(envoy) and _envoy_of(folder, envoy)
        if envoy_running:
            orphans.append(Leftover(envoy, folder, str(state.get("listen", ""))))
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return orphans
